"""Scheduling: expected intervals from `every` and cron, and pause apart from shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timezone

import pytest
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


async def test_a_cron_source_is_scheduled_at_its_first_fire_time() -> None:
    """Not paused: APScheduler adds a job whose next_run_time is None as paused."""
    registry = CollectorRegistry()

    async def run(src: SourceConfig) -> None:
        pass

    async with Scheduler((source(cron="*/5 * * * *"),), Metrics(registry), run) as scheduler:
        next_run = scheduler.next_runs()["s"]
        now = datetime.now(timezone.utc).timestamp()
        assert now < next_run <= now + 300
        assert registry.get_sample_value(
            "crawler_source_next_run_timestamp_seconds", {"source": "s"}
        ) == pytest.approx(next_run)


async def test_configure_follows_a_reloaded_source_list() -> None:
    """Added: scheduled; removed: unscheduled; changed: the new definition, rescheduled only
    when its schedule changed; unchanged: its next run where it was."""
    started: list[SourceConfig] = []

    async def run(src: SourceConfig) -> None:
        started.append(src)

    keep, change, gone = source("keep", every=3600.0), source("change", every=3600.0), source("gone", every=3600.0)  # fmt: skip
    async with Scheduler((keep, change, gone), Metrics(CollectorRegistry()), run) as scheduler:
        for _ in range(100):
            if len(started) == 3:
                break
            await asyncio.sleep(0.01)
        before = scheduler.next_runs()
        changed = dataclasses.replace(source("change", every=3600.0), items="p")
        new = source("new", every=3600.0)
        again = source("keep", every=3600.0)  # an equal copy, as a reload reads it
        scheduler.configure((again, changed, new), {"change"})
        after = scheduler.next_runs()
        assert set(after) == {"keep", "change", "new"}
        assert after["keep"] == before["keep"] and after["change"] == before["change"]
        for _ in range(100):
            if len(started) == 4:
                break
            await asyncio.sleep(0.01)
        assert [s.name for s in started[3:]] == ["new"]  # an added `every` source runs at once
        scheduler.configure(
            (again, dataclasses.replace(source("change", every=60.0), items="p"), new), {"change"}
        )
        assert scheduler.next_runs()["change"] < before["change"] - 3000  # rescheduled
