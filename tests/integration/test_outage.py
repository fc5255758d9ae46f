"""Outages: PostgreSQL, or the link to it, goes away mid-crawl; nothing counted is lost, nothing
is stored twice."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from prometheus_client import CollectorRegistry

from crawler.config.root import load_config
from crawler.record import Record
from crawler.service import Service
from tests.crawler_proc import CrawlerProcess, counted_keys, outage_config, read_logs, scrape
from tests.helpers import PostgresServer, free_port, wait_for
from tests.proxy import Proxy
from tests.site import Site, quote_source


def metric(port: int, name: str) -> float | None:
    try:
        return scrape(port).get(name)
    except OSError:
        return None


def test_database_outage_mid_crawl_loses_nothing(site: Site, tmp_path: Path):
    pg = PostgresServer()
    pg.start()
    dsn = pg.create_database()
    port = free_port()
    stop_bumping = threading.Event()

    def bump() -> None:  # new records keep appearing on the site
        while not stop_bumping.wait(0.3):
            site.version += 1

    bumper = threading.Thread(target=bump, daemon=True)
    bumper.start()
    crawler = CrawlerProcess(outage_config(site, tmp_path, dsn, port), tmp_path / "crawler.log")
    seen_down = seen_spool = 0.0
    try:
        wait_for(
            lambda: (
                (
                    metric(port, 'crawler_records_stored_total{backend="postgres",source="quotes"}')
                    or 0
                )
                > 0
            ),
            timeout=30,
        )
        pg.stop()
        outage_started = time.monotonic()
        while time.monotonic() - outage_started < 4:
            m = scrape(port)
            if m.get("crawler_database_up") == 0:
                seen_down += 1
            seen_spool = max(seen_spool, m.get("crawler_spool_records", 0))
            time.sleep(0.2)
        ready = metric(port, "crawler_ready")
        pg.start()
        wait_for(
            lambda: (
                metric(port, "crawler_spool_records") == 0
                and metric(port, "crawler_database_up") == 1
            ),
            timeout=60,
        )
        drained = metric(port, "crawler_spool_drained_records_total") or 0
    finally:
        stop_bumping.set()
        assert crawler.stop() == 0
    try:
        assert seen_down > 0, "the metrics never showed the database down"
        assert seen_spool > 0, "nothing was spooled during the outage"
        assert drained >= seen_spool
        assert ready == 1  # the spool took over: still ready during the outage
        keys = counted_keys(read_logs(tmp_path / "crawler.log"))
        with psycopg.connect(dsn) as conn:
            stored = set(conn.execute("select source, key from scraped_data").fetchall())
            total = conn.execute("select count(*) from scraped_data").fetchone()[0]
        assert keys, "the crawler counted nothing"
        assert keys <= stored, f"{len(keys - stored)} counted records are missing"
        assert total == len(stored)
        logs = read_logs(tmp_path / "crawler.log")
        messages = [e["message"] for e in logs]
        assert "database unreachable; spooling locally" in messages
        assert "spool drained" in messages and "database reachable" in messages
    finally:
        pg.destroy()


async def test_link_cut_with_the_database_up_spools_then_drains(
    pg_dsn: str, pg_proxy: Proxy, write_config: Callable[..., Path]
):
    """The NAS leaves the Wi-Fi but PostgreSQL runs on: writes through the cut link go to the
    spool at once, and the drainer moves them in when the link is back."""
    cfg = load_config(
        write_config(
            storage={"dsn": pg_proxy.dsn(pg_dsn), "connect_timeout": "1s", "write_timeout": "2s"},
            sources=[quote_source("s", ["http://127.0.0.1:9/x"])],
        )
    )
    registry = CollectorRegistry()
    service = Service(cfg, registry)

    def stored() -> int:
        with psycopg.connect(pg_dsn) as conn:  # directly, not through the proxy
            return int(conn.execute("select count(*) from scraped_data").fetchone()[0])

    def batch(start: int) -> list[Record]:
        return [Record("s", f"k{i}", {"i": i}) for i in range(start, start + 10)]

    async with service.opened():
        sink = service.sink
        assert sink is not None and sink.spool is not None and sink.db_up
        await sink.write("s", batch(0))
        assert stored() == 10 and sink.spool.empty
        pg_proxy.cut()
        await sink.write("s", batch(10))  # the connection is gone: spooled, not lost
        await sink.write("s", batch(20))  # and the next batch follows it into the spool
        assert sink.db_up is False and sink.spool.records == 20
        assert registry.get_sample_value("crawler_database_up") == 0
        assert stored() == 10  # PostgreSQL itself was up all along
        pg_proxy.restore()
        for _ in range(300):
            if sink.spool.empty and sink.db_up:
                break
            await asyncio.sleep(0.1)
        assert sink.spool.empty and sink.db_up
    assert stored() == 30
    assert registry.get_sample_value("crawler_records_spooled_total", {"source": "s"}) == 20
