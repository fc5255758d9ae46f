"""kill -9 at random moments while crawling, spooling and draining: nothing counted is lost."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import psycopg

from tests.crawler_proc import CrawlerProcess, counted_keys, outage_config, read_logs, run_cli
from tests.helpers import PostgresServer, free_port
from tests.site import Site

KILLS = 24  # eight in each phase


def spool_depth(path: Path) -> int:
    if not path.exists():
        return 0
    conn = sqlite3.connect(path, timeout=30)
    try:
        return int(conn.execute("select count(*) from records").fetchone()[0])
    finally:
        conn.close()


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(site: Site, tmp_path: Path):
    rng = random.Random(20261121)
    pg = PostgresServer()
    pg.start()
    dsn = pg.create_database()
    port = free_port()
    config = outage_config(site, tmp_path, dsn, port, pages=8, every="500ms")
    spool_file = tmp_path / "var" / "spool.sqlite"
    logs = tmp_path / "crawler.log"
    pg_up = True
    phases_seen = {"crawl": 0, "spool": 0, "drain": 0}
    try:
        for i in range(KILLS):
            phase = ("crawl", "spool", "drain")[i % 3]
            if phase == "spool" and pg_up:
                pg.stop("immediate")
                pg_up = False
            elif phase != "spool" and not pg_up:
                pg.start()
                pg_up = True
            site.version += 1  # every run brings new records
            depth_before = spool_depth(spool_file)
            crawler = CrawlerProcess(config, logs)
            # Start-up takes ~0.5 s; drains are quick, so kill them sooner.
            time.sleep(rng.uniform(0.5, 0.9) if phase == "drain" else rng.uniform(0.6, 2.0))
            crawler.kill()
            depth_after = spool_depth(spool_file)
            if phase == "spool" and depth_after > depth_before:
                phases_seen["spool"] += 1
            elif phase == "drain" and depth_before > 0:
                phases_seen["drain"] += 1
            elif phase == "crawl":
                phases_seen["crawl"] += 1
        if not pg_up:
            pg.start()
        # After the last kill: drain what is left, as a user would.
        drained = run_cli("spool", "-c", str(config), "--drain", timeout=120)
        assert drained.returncode == 0, drained.stderr
        assert spool_depth(spool_file) == 0
        keys = counted_keys(read_logs(logs))
        with psycopg.connect(dsn) as conn:
            stored = conn.execute("select source, key from scraped_data").fetchall()
            jobs = conn.execute(
                "select run_id, count(*) from crawler_jobs group by 1 having count(*) > 1"
            ).fetchall()
        assert phases_seen["spool"] >= 4 and phases_seen["drain"] >= 4, phases_seen
        assert len(keys) > 500, f"too little was counted to prove anything: {len(keys)}"
        missing = keys - set(stored)
        assert not missing, f"{len(missing)} counted records lost, e.g. {sorted(missing)[:3]}"
        assert len(stored) == len(set(stored))
        assert jobs == []
    finally:
        pg.destroy()
