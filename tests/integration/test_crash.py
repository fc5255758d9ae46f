"""kill -9 at random moments while crawling, spooling and draining: nothing counted is lost."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import psycopg

from tests.crawler_proc import CrawlerProcess, counted_keys, outage_config, read_logs, run_cli
from tests.helpers import PostgresServer, free_port, wait_for
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


def started(logs: Path, offset: int) -> bool:
    """Has the crawler started after `offset` written its first line ("crawler starting")?"""
    with logs.open("rb") as f:
        f.seek(offset)
        return b'"crawler starting"' in f.read()


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
            offset = logs.stat().st_size if logs.exists() else 0
            crawler = CrawlerProcess(config, logs)
            # Random moments counted from the process's first log line, not from its spawn:
            # imports take 0.5 s on a quiet machine and several seconds on a loaded one, and
            # a kill before the first line proves nothing. Drains are quick: killed sooner.
            wait_for(lambda offset=offset: started(logs, offset), timeout=60, interval=0.02)
            time.sleep(rng.uniform(0.0, 0.4) if phase == "drain" else rng.uniform(0.1, 1.5))
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


def test_sigkill_mid_walk_of_listings_and_detail_pages(tmp_path: Path, pg_dsn: str):
    """A paginated catalogue with detail pages (`follow` with `refresh_after`), killed while
    the walk is halfway: a listing is recorded only once all its detail pages are, so the
    runs after the kills still reach every product; nothing counted is lost or doubled."""
    from tests.catalogue_site import PRODUCTS, CatalogueSite

    rng = random.Random(20261122)
    other = Site(host="127.0.0.2").start()
    cat = CatalogueSite(other=other.base).start()
    config = tmp_path / "crawler.yaml"
    config.write_text(
        f"""\
instance: crash-walk
state_dir: {tmp_path}/var
log_level: DEBUG
metrics: {{listen: "127.0.0.1:{free_port()}"}}
storage: {{dsn: "{pg_dsn}", batch_size: 4}}
fetch: {{politeness_delay: 150ms, per_host_concurrency: 1, robots: false, retry: {{attempts: 1}}}}
sources:
  - name: books
    every: 300ms
    urls: ["{cat.base}/cat/page-1.html"]
    paginate: {{next: "li.next a::attr(href)", max_pages: 10}}
    follow: {{links: "article.product_pod h3 a::attr(href)", max_per_run: 100, refresh_after: 1h}}
    fields: {{title: "h1::text", upc: "table tr:nth-child(1) td::text", edition: "p.edition::text"}}
    key: [upc]
"""
    )
    logs = tmp_path / "crawler.log"

    def stored_upcs() -> set[str]:
        with psycopg.connect(pg_dsn) as conn:
            try:
                return {k for (k,) in conn.execute("select key from scraped_data").fetchall()}
            except psycopg.errors.UndefinedTable:  # killed before its first migration
                return set()

    partial = 0
    try:
        for _ in range(4):
            cat.version += 1
            started = logs.read_text().count("source run started") if logs.exists() else 0
            crawler = CrawlerProcess(config, logs)
            # Start-up time varies with the machine's load: wait for the walk to begin, then
            # kill it within the ~5 s a walk of 33 pages at 150 ms per request takes.
            wait_for(lambda n=started: logs.read_text().count("source run started") > n, timeout=60)
            time.sleep(rng.uniform(1.0, 4.5))
            crawler.kill()
            partial += 0 < len(stored_upcs()) < PRODUCTS
        final = run_cli("once", "-c", str(config), timeout=120)
        assert final.returncode == 0, final.stdout[-2000:] + final.stderr
        keys = counted_keys(read_logs(logs))
        with psycopg.connect(pg_dsn) as conn:
            rows = conn.execute("select source, key from scraped_data").fetchall()
        assert partial >= 1, "no kill landed in the middle of a walk: the test proved nothing"
        assert len(rows) == len(set(rows)) == PRODUCTS  # every product, once
        assert stored_upcs() == {f"upc-{n:04d}" for n in range(PRODUCTS)}
        missing = keys - set(rows)
        assert not missing, f"{len(missing)} counted records lost, e.g. {sorted(missing)[:3]}"
    finally:
        cat.stop()
        other.stop()
