"""A run's batcher: a page's commit callback runs once its own records are stored, no later.

A page that waited for the queue to run empty kept its callback, and what the callback holds,
alive while 16 workers fed a slower database: on the benchmark crawl nearly every page's body
(issue 13, peak RSS). Real sink, embedded SQLite store.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from crawler.config.root import load_config
from crawler.observability.metrics import Metrics
from crawler.record import Record
from crawler.run.pipeline import _Batcher
from crawler.run.result import RunResult
from crawler.storage.sink import Sink


@pytest.fixture
async def sink(write_config: Callable[..., Path]) -> AsyncIterator[Sink]:
    source = {"name": "s", "every": "1h", "urls": ["http://127.0.0.1:9/"], "items": "li"}
    source["fields"] = {"t": "b"}
    config = load_config(write_config(sources=[source]))
    s = Sink(config, Metrics(CollectorRegistry()))
    await s.open()
    yield s
    await s.close()


def page(name: str, n: int) -> list[Record]:
    return [Record(source="s", key=f"{name}{i}", data={"i": i}) for i in range(n)]


def stored(sink: Sink) -> int:
    with sqlite3.connect(sink.config.storage.sqlite_path) as db:
        count: int = db.execute("SELECT count(*) FROM scraped_data").fetchone()[0]
        return count


async def test_a_page_commits_when_its_batch_is_stored_while_others_still_wait(
    sink: Sink,
) -> None:
    batcher = _Batcher(sink, RunResult("s"), 2, sink.metrics)
    seen: dict[str, tuple[int, int]] = {}

    def commit(name: str) -> Callable[[], None]:
        return lambda: seen.setdefault(name, (stored(sink), len(batcher.pending)))

    # Page a's batch is being written when page b's records arrive: a commits before b is stored.
    await asyncio.gather(
        batcher.add(page("a", 2), commit("a")), batcher.add(page("b", 2), commit("b"))
    )
    assert seen == {"a": (2, 2), "b": (4, 0)}


async def test_a_page_split_over_two_batches_commits_after_the_second(sink: Sink) -> None:
    batcher = _Batcher(sink, RunResult("s"), 2, sink.metrics)
    calls: list[int] = []
    await batcher.add(page("c", 3), lambda: calls.append(stored(sink)))
    assert calls == [3]
    await batcher.add(page("d", 1), lambda: calls.append(stored(sink)))
    assert calls == [3]  # below the batch size: pending until the run's last flush
    await batcher.flush()
    assert calls == [3, 4]


async def test_the_run_learns_how_many_of_its_records_were_new_and_changed(sink: Sink) -> None:
    first = RunResult("s")
    batcher = _Batcher(sink, first, 2, sink.metrics)
    await batcher.add(page("e", 3), lambda: None)
    await batcher.flush()
    assert (first.records_new, first.records_changed, first.records_spooled) == (3, 0, 0)
    second = RunResult("s")
    batcher = _Batcher(sink, second, 2, sink.metrics)
    again = page("e", 3)
    again[1] = Record(source="s", key="e1", data={"i": 1, "edited": True})
    await batcher.add(again, lambda: None)
    await batcher.flush()
    assert (second.records_new, second.records_changed, second.records_spooled) == (0, 1, 0)
