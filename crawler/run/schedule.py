"""Scheduling: one APScheduler job per source.

Never two runs of one source at once (`max_instances=1`), missed runs coalesced into one, and
`every` jobs start right away then repeat with jitter; `cron` jobs follow the 5-field crontab in
the machine's local time zone. The expected interval and the next run are exported as metrics,
so an alert can say "no success in twice the interval" without a per-source constant.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
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
        for source in self.sources:
            self._add(source)
        self._scheduler.start()
        self._update_next_runs()
        log.info("scheduler started", extra={"sources": len(self.sources)})

    def _add(self, source: SourceConfig) -> None:
        from apscheduler.util import undefined

        if not source.enabled:
            return
        self.metrics.interval.labels(source.name).set(expected_interval(source))
        self._scheduler.add_job(
            self._job,
            make_trigger(source),
            args=[source],
            id=source.name,
            name=source.name,
            # `every` runs at once; `cron` at its first fire time (APScheduler's `undefined`:
            # an explicit None would add the job paused, and the source would never run).
            next_run_time=datetime.now(timezone.utc) if source.every is not None else undefined,
        )

    def configure(self, sources: tuple[SourceConfig, ...], changed: Collection[str]) -> None:
        """Follow a reloaded source list. Added sources are scheduled (an `every` one runs at
        once) and removed ones unscheduled; a `changed` one runs its new definition from its
        next run (rescheduled only when its `every`, `cron` or `jitter` changed); the others
        keep their job untouched, so no run moves and none doubles. Runs under way go on:
        APScheduler counts a job's running instance by its id, so a source removed and added
        back while its run is still under way does not run twice at once."""
        before = {s.name: s for s in self.sources}
        for name in before.keys() - {s.name for s in sources}:
            if self._scheduler.get_job(name) is not None:
                self._scheduler.remove_job(name)
        for source in sources:
            old = before.get(source.name)
            job = self._scheduler.get_job(source.name)
            if old is None or (source.name in changed and job is None):
                self._add(source)
            elif source.name not in changed:
                continue
            elif not source.enabled:
                self._scheduler.remove_job(source.name)
            elif (old.every, old.cron, old.jitter) == (source.every, source.cron, source.jitter):
                job.modify(args=[source])
            else:
                self.metrics.interval.labels(source.name).set(expected_interval(source))
                job.modify(args=[source])
                job.reschedule(make_trigger(source))
        self.sources = sources
        self._update_next_runs()

    def next_runs(self) -> dict[str, float]:
        """When each scheduled source runs next (Unix time); paused or disabled: absent."""
        return {
            job.id: job.next_run_time.timestamp()
            for job in self._scheduler.get_jobs()
            if job.next_run_time is not None
        }

    async def _job(self, source: SourceConfig) -> None:
        try:
            await self._run(source)
        finally:
            self._update_next_runs()

    def _update_next_runs(self) -> None:
        for name, at in self.next_runs().items():
            self.metrics.next_run.labels(name).set(at)

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
