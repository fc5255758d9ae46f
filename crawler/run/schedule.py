"""Scheduling: one APScheduler job per source.

Never two runs of one source at once (`max_instances=1`), missed runs coalesced into one, and
`every` jobs start right away then repeat with jitter; `cron` jobs follow the 5-field crontab in
the machine's local time zone. The expected interval and the next run are exported as metrics,
so an alert can say "no success in twice the interval" without a per-source constant.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from crawler.config.sources import SourceConfig
from crawler.lifecycle import Part
from crawler.observability.metrics import Metrics

log = logging.getLogger("crawler.schedule")


def make_trigger(source: SourceConfig) -> Any:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if source.cron:
        return CronTrigger.from_crontab(source.cron)
    assert source.every is not None
    return IntervalTrigger(seconds=source.every, jitter=source.jitter or None)


def expected_interval(source: SourceConfig, now: datetime | None = None) -> float:
    """Seconds between runs: `every`, or the gap between the next two cron fire times."""
    if source.every is not None:
        return source.every
    trigger = make_trigger(source)
    now = now or datetime.now(timezone.utc)
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))
    return float((second - first).total_seconds())


class Scheduler(Part):
    """Runs `run(source)` for each source on its schedule, in the current event loop.

    `async with` starts it and shuts it down; `pause()` only stops it starting new runs (the
    first step of an orderly stop, while the runs under way finish).
    """

    def __init__(
        self,
        sources: tuple[SourceConfig, ...],
        metrics: Metrics,
        run: Callable[[SourceConfig], Awaitable[object]],
    ) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.sources, self.metrics, self._run = sources, metrics, run
        self._scheduler = AsyncIOScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        self._paused = False
        self._closed = False  # shutdown() takes effect on a later loop turn: our own flag

    @property
    def running(self) -> bool:
        """Started, and neither paused nor shut down: runs start on schedule."""
        return bool(self._scheduler.running) and not (self._paused or self._closed)

    async def open(self) -> None:
        self.start()

    async def close(self) -> None:
        """Shut down (runs under way are the caller's: see Service); safe after a pause."""
        if self._scheduler.running and not self._closed:
            self._closed = True
            self._scheduler.shutdown(wait=False)
            log.info("scheduler shut down")

    def start(self) -> None:
        now = datetime.now(timezone.utc)
        for source in self.sources:
            if not source.enabled:
                continue
            self.metrics.interval.labels(source.name).set(expected_interval(source))
            self._scheduler.add_job(
                self._job,
                make_trigger(source),
                args=[source],
                id=source.name,
                name=source.name,
                next_run_time=now if source.every is not None else None,
            )
        self._scheduler.start()
        self._update_next_runs()
        log.info("scheduler started", extra={"sources": len(self.sources)})

    async def _job(self, source: SourceConfig) -> None:
        try:
            await self._run(source)
        finally:
            self._update_next_runs()

    def _update_next_runs(self) -> None:
        for job in self._scheduler.get_jobs():
            if job.next_run_time is not None:
                self.metrics.next_run.labels(job.id).set(job.next_run_time.timestamp())

    def pause(self) -> None:
        """Stop starting new runs (runs under way go on); `resume()` undoes it. Idempotent."""
        if self.running:
            self._paused = True
            self._scheduler.pause()
            log.info("scheduler paused")

    def resume(self) -> None:
        """Start runs on schedule again after `pause()` (missed ones coalesced into one)."""
        if self._paused and not self._closed:
            self._paused = False
            self._scheduler.resume()
            log.info("scheduler resumed")
