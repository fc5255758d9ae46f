"""Scheduling: expected intervals from `every` and cron, and pause apart from shutdown."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry

from crawler.config.fields import FieldSpec
from crawler.config.sources import SourceConfig
from crawler.observability.metrics import Metrics
from crawler.run.schedule import Scheduler, expected_interval


def source(name: str = "s", **when: object) -> SourceConfig:
    return SourceConfig(
        name=name,
        urls=("http://h/",),
        items="div",
        fields=(FieldSpec(name="t", selector="p::text"),),
        **when,  # type: ignore[arg-type]
    )


def test_expected_interval_of_every_is_every() -> None:
    assert expected_interval(source(every=90.0)) == 90.0


def test_expected_interval_of_cron_from_an_injected_now() -> None:
    # The next two fire times after `now` (local time: weekdays at 09:00, no DST change near).
    friday_early = datetime(2026, 11, 20, 3, 0, tzinfo=timezone.utc)
    weekdays = source(cron="0 9 * * 1-5")
    gap = expected_interval(weekdays, now=friday_early)
    assert gap in (86400.0, 3 * 86400.0)  # Fri→Mon unless local 09:00 Friday already passed
    assert expected_interval(source(cron="*/15 * * * *"), now=friday_early) == 900.0


async def test_runs_at_once_then_pause_stops_new_runs_and_resume_restarts_them() -> None:
    registry = CollectorRegistry()
    started: list[str] = []

    async def run(src: SourceConfig) -> None:
        started.append(src.name)

    async with Scheduler((source(every=0.05),), Metrics(registry), run) as scheduler:
        assert scheduler.running
        for _ in range(100):
            if started:
                break
            await asyncio.sleep(0.01)
        assert started == ["s"]  # `every` sources run right away
        assert registry.get_sample_value("crawler_source_interval_seconds", {"source": "s"}) == 0.05
        scheduler.pause()
        scheduler.pause()  # idempotent
        assert not scheduler.running
        count = len(started)
        await asyncio.sleep(0.3)
        assert len(started) == count  # paused: no new run
        scheduler.resume()  # paused, not shut down: it can go on
        assert scheduler.running
        for _ in range(100):
            if len(started) > count:
                break
            await asyncio.sleep(0.01)
        assert len(started) > count
    assert not scheduler.running  # leaving `async with` shuts it down
    count = len(started)
    await asyncio.sleep(0.2)
    assert len(started) == count
    scheduler.resume()  # after shutdown, resume is a no-op
    assert not scheduler.running


async def test_disabled_sources_are_not_scheduled() -> None:
    started: list[str] = []

    async def run(src: SourceConfig) -> None:
        started.append(src.name)

    sources = (source("on", every=3600.0), source("off", every=3600.0, enabled=False))
    async with Scheduler(sources, Metrics(CollectorRegistry()), run):
        for _ in range(100):
            if started:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
    assert started == ["on"]
