"""Outages: PostgreSQL goes away mid-crawl; nothing counted is lost, nothing is stored twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg

from tests.crawler_proc import CrawlerProcess, counted_keys, outage_config, read_logs, scrape
from tests.helpers import PostgresServer, free_port, wait_for
from tests.site import Site


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
