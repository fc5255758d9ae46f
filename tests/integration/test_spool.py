"""The spool's promises: durable, capped without silent drops, drained oldest first."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from crawler.config.root import load_config
from crawler.errors import SpoolFull
from crawler.observability.metrics import Metrics
from crawler.record import Record, RunRow, Written
from crawler.service import Service
from crawler.sqlite import migrate_sqlite, open_sqlite
from crawler.storage.sink import Sink
from crawler.storage.spool import SPOOL_MIGRATIONS, Spool
from tests.crawler_proc import run_cli
from tests.helpers import PostgresServer, free_port
from tests.site import Site, quote_source


def recs(n: int, start: int = 0, source: str = "s") -> list[Record]:
    return [
        Record(source=source, key=f"k{i}", data={"i": i, "pad": "x" * 200})
        for i in range(start, start + n)
    ]


def spool_settings(
    dsn: str, max_bytes: str = "64MiB", urls: str = "http://127.0.0.1:9/x"
) -> dict[str, Any]:
    """Overrides for `write_config`: small batches and drains, one attempt, one source."""
    return {
        "log_level": "DEBUG",
        "storage": {"dsn": dsn, "batch_size": 20, "connect_timeout": "1s"},
        "spool": {"max_bytes": max_bytes, "drain_batch": 7},
        "fetch": {"retry": {"attempts": 1}},
        "sources": [quote_source("s", [urls])],
    }


async def test_spool_survives_reopen_and_keeps_order(tmp_path: Path):
    spool = Spool(tmp_path / "spool.sqlite", 10 * 2**20)
    await spool.open()
    await spool.add(recs(5))
    await spool.add(recs(5, start=5))
    await spool.close()
    again = Spool(tmp_path / "spool.sqlite", 10 * 2**20)
    await again.open()
    assert again.records == 10 and again.oldest_age() >= 0
    ids, batch = await again.peek_records(4)
    assert [r.key for r in batch] == ["k0", "k1", "k2", "k3"]
    await again.remove("records", ids)
    assert again.records == 6
    _, rest = await again.peek_records(100)
    assert [r.key for r in rest] == [f"k{i}" for i in range(4, 10)]
    await again.close()


async def test_spool_of_an_older_version_keeps_its_run_rows(tmp_path: Path):
    """A spool file written before run rows had their own name still drains them."""
    path = tmp_path / "spool.sqlite"
    conn = open_sqlite(path)
    migrate_sqlite(conn, SPOOL_MIGRATIONS[:1])
    row = RunRow("r1", "s", "i", "success", 1.0, 2.0, 3, 4, None)
    conn.execute("INSERT INTO jobs (job, spooled_at) VALUES (?, 1.0)", (json.dumps(asdict(row)),))
    conn.close()
    spool = Spool(path, 10 * 2**20)
    await spool.open()
    try:
        assert spool.runs == 1 and not spool.empty
        ids, runs = await spool.peek_runs(10)
        assert runs == [row]
        await spool.remove("runs", ids)
        assert spool.empty
    finally:
        await spool.close()


async def test_a_spooled_run_row_from_before_the_new_and_changed_counts_still_stores(
    tmp_path: Path, write_config: Callable[..., Path], pg_dsn: str
):
    """An older crawler spooled this row's JSON without `records_new`/`records_changed`."""
    cfg = load_config(write_config(**spool_settings(pg_dsn)))
    old = {
        "run_id": "7d1c3c57-3c1a-4a51-9d55-2b9f0c1f8e01",
        "source": "s",
        "instance": "old",
        "status": "success",
        "started_at": 1.0,
        "finished_at": 2.0,
        "pages": 3,
        "records": 4,
        "error": None,
    }
    conn = open_sqlite(cfg.spool.path)
    migrate_sqlite(conn, SPOOL_MIGRATIONS)
    conn.execute("INSERT INTO runs (run, spooled_at) VALUES (?, 1.0)", (json.dumps(old),))
    conn.close()
    sink = Sink(cfg, Metrics(CollectorRegistry()))
    await sink.open(drainer=False)
    try:
        assert sink.spool is not None and sink.spool.runs == 1
        assert await sink.drain() == 1
        assert sink.spool.empty
    finally:
        await sink.close()
    with psycopg.connect(pg_dsn) as pg:
        rows = pg.execute(
            "select instance, records, records_new, records_changed from crawler_jobs"
        ).fetchall()
    assert rows == [("old", 4, None, None)]


async def test_cap_refuses_new_records_and_keeps_old_ones(
    tmp_path: Path, write_config: Callable[..., Path], caplog: pytest.LogCaptureFixture
):
    dead = f"postgresql://x@127.0.0.1:{free_port()}/x"
    cfg = load_config(write_config(**spool_settings(dead, max_bytes="48KiB")))
    registry = CollectorRegistry()
    service = Service(cfg, registry)
    async with service.opened():
        sink = service.sink
        assert sink is not None and sink.db_up is False
        accepted = 0
        with caplog.at_level(logging.ERROR, logger="crawler.sink"), pytest.raises(SpoolFull):
            for n in range(1000):
                await sink.write("s", recs(20, start=n * 20))
                accepted += 20
        assert accepted > 0
        assert sink.spool is not None and sink.spool.records == accepted
        refused = registry.get_sample_value("crawler_records_refused_total", {"source": "s"})
        assert refused == 20
        assert any(r.getMessage() == "records refused: spool full" for r in caplog.records)
        ok, detail = service.readiness()
        assert ok is False and "spool full" in str(detail["store"])
        assert registry.get_sample_value("crawler_spool_records") == accepted
    # Nothing already spooled was lost: a drain into a real database moves every record.
    pg = PostgresServer()
    pg.start()
    try:
        dsn = pg.create_database()
        cfg2 = load_config(write_config(**spool_settings(dsn, max_bytes="48KiB")))
        sink2 = Sink(cfg2, Metrics(CollectorRegistry()))
        await sink2.open(drainer=False)
        try:
            moved = await sink2.drain()
        finally:
            await sink2.close()
        assert moved == accepted
        with psycopg.connect(dsn) as conn:
            assert conn.execute("select count(*) from scraped_data").fetchone()[0] == accepted
    finally:
        pg.destroy()


async def test_writes_follow_the_spool_until_it_is_empty(
    tmp_path: Path, write_config: Callable[..., Path], pg_dsn: str
):
    """Once anything is spooled, new batches queue behind it: an old version never wins."""
    cfg = load_config(write_config(**spool_settings(pg_dsn)))
    sink = Sink(cfg, Metrics(CollectorRegistry()))
    await sink.open(drainer=False)
    try:
        assert sink.spool is not None
        await sink.spool.add([Record(source="s", key="k0", data={"v": "old"})])
        sink.db_up = True
        written = await sink.write("s", [Record(source="s", key="k0", data={"v": "new"})])
        assert written == Written(spooled=1)  # not compared with the store: neither new nor changed
        assert sink.spool.records == 2  # the new version waits behind the old one
        await sink.drain()
    finally:
        await sink.close()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("select data from scraped_data").fetchall() == [({"v": "new"},)]


def test_cli_spool_shows_depth_and_drains(
    tmp_path: Path, write_config: Callable[..., Path], site: Site
):
    pg = PostgresServer()
    pg.start()
    dsn = pg.create_database()
    try:
        path = write_config(**spool_settings(dsn, urls=f"{site.base}/page/{{0..2}}"))
        pg.stop()
        once = run_cli("once", "-c", str(path))
        assert once.returncode == 0, once.stdout + once.stderr
        show = run_cli("spool", "-c", str(path))
        state = json.loads(show.stdout.splitlines()[-1])
        assert state["spool"]["records"] == 60 and state["database_up"] is False
        refused = run_cli("spool", "-c", str(path), "--drain")
        assert refused.returncode == 1 and "cannot drain" in refused.stderr
        pg.start()
        drain = run_cli("spool", "-c", str(path), "--drain")
        assert drain.returncode == 0, drain.stderr
        assert json.loads(drain.stdout.splitlines()[-1])["drained"] >= 60
        with psycopg.connect(dsn) as conn:
            assert conn.execute("select count(*) from scraped_data").fetchone()[0] == 60
            assert conn.execute("select count(*) from crawler_jobs").fetchone()[0] == 1
    finally:
        pg.destroy()


async def test_a_failing_spool_write_is_refused_and_counted(
    tmp_path: Path, write_config: Callable[..., Path], caplog: pytest.LogCaptureFixture
):
    """A full or failing SD card (here SQLite's own "database or disk is full") is a refusal:
    logged, counted, raised as our error — never a silent drop, never a crash."""
    from crawler.errors import StoreError

    dead = f"postgresql://x@127.0.0.1:{free_port()}/x"
    cfg = load_config(write_config(**spool_settings(dead)))
    registry = CollectorRegistry()
    sink = Sink(cfg, Metrics(registry))
    await sink.open(drainer=False)
    try:
        assert sink.spool is not None
        pages = sink.spool.conn.execute("PRAGMA page_count").fetchone()[0]
        sink.spool.conn.execute(f"PRAGMA max_page_count={pages + 2}")
        with caplog.at_level(logging.ERROR, logger="crawler.sink"), pytest.raises(StoreError):
            for n in range(100):
                await sink.write("s", recs(20, start=n * 20))
        assert registry.get_sample_value("crawler_records_refused_total", {"source": "s"}) == 20
        assert any(r.getMessage() == "records refused: spool write failed" for r in caplog.records)
    finally:
        await sink.close()


async def test_a_refused_run_stops_all_its_workers(
    tmp_path: Path, write_config: Callable[..., Path], site: Site
):
    """When the spool refuses a batch, the run fails and none of its workers fetches on."""
    import asyncio

    dead = f"postgresql://x@127.0.0.1:{free_port()}/x"
    cfg = load_config(
        write_config(**spool_settings(dead, max_bytes="40KiB", urls=f"{site.base}/page/{{0..199}}"))
    )
    service = Service(cfg, CollectorRegistry())
    async with service.opened() as pipeline:  # the fetcher stays open, as in `run`
        result = await pipeline.run_source(cfg.sources[0])
        assert result.status == "failure" and "spool is full" in (result.error or "")
        hits = sum(site.hits.values())
        assert hits < 200
        await asyncio.sleep(0.5)
        assert sum(site.hits.values()) == hits
