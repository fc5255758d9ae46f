"""Several crawlers on one PostgreSQL: sources shared without overlap, fail-over when one dies."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from tests.crawler_proc import CrawlerProcess, read_logs
from tests.helpers import wait_for, write_config
from tests.site import Site, quote_source

SOURCES = 4
TTL = 3.0


def config(site: Site, tmp_path: Path, name: str, dsn: str) -> Path:
    """One crawler's file: its own state and port, every source every 500 ms, one database."""
    return write_config(
        tmp_path,
        f"{name}.yaml",
        instance=name,
        state_dir=str(tmp_path / name),
        log_level="INFO",
        lease_ttl=f"{TTL}s",
        storage={"dsn": dsn},
        fetch={"conditional_get": False},
        sources=[
            quote_source(f"s{i}", [f"{site.base}/page/{i}"], every="500ms") for i in range(SOURCES)
        ],
    )


def runs(dsn: str) -> list[tuple[str, str, float, float]]:
    with psycopg.connect(dsn) as conn:
        if conn.execute("select to_regclass('crawler_jobs')").fetchone() == (None,):
            return []  # the crawlers have not migrated the database yet
        return conn.execute(
            "select source, instance, extract(epoch from started_at)::float8,"
            " extract(epoch from finished_at)::float8 from crawler_jobs order by started_at"
        ).fetchall()


def test_two_crawlers_share_sources_without_overlap_and_fail_over(
    site: Site, tmp_path: Path, pg_dsn: str
):
    a = CrawlerProcess(config(site, tmp_path, "pi-a", pg_dsn), tmp_path / "a.log")
    b = CrawlerProcess(config(site, tmp_path, "pi-b", pg_dsn), tmp_path / "b.log")
    try:
        # Both get a fair share once they have seen each other.
        def both_running() -> bool:
            recent = [r for r in runs(pg_dsn) if r[3] > time.time() - 1.5]
            return {r[1] for r in recent} == {"pi-a", "pi-b"}

        wait_for(both_running, timeout=30, interval=0.25)
        time.sleep(2)
        killed_at = time.time()
        a.kill()
        a_sources = {r[0] for r in runs(pg_dsn) if r[1] == "pi-a" and r[3] > killed_at - 1.5}
        assert a_sources, "pi-a ran nothing just before it was killed"

        def b_took_over() -> bool:
            return a_sources <= {r[0] for r in runs(pg_dsn) if r[1] == "pi-b" and r[2] > killed_at}

        wait_for(b_took_over, timeout=TTL * 4, interval=0.2)
        takeover = (
            min(
                r[2]
                for r in runs(pg_dsn)
                if r[1] == "pi-b" and r[2] > killed_at and r[0] in a_sources
            )
            - killed_at
        )
        time.sleep(1)
    finally:
        a.kill()
        assert b.stop() == 0
    all_runs = runs(pg_dsn)
    for i, (src, inst, start, end) in enumerate(all_runs):
        for src2, inst2, start2, end2 in all_runs[i + 1 :]:
            if src2 == src and inst2 != inst:
                assert end <= start2 or end2 <= start, f"{src} ran on {inst} and {inst2} at once"
    # Bounded fail-over: the lease expires after TTL, and is taken at the next refresh (TTL/3).
    assert takeover <= TTL + TTL / 3 + 1.5, takeover
    changes = [e for e in read_logs(tmp_path / "b.log") if e["message"] == "leases changed"]
    assert changes and set(changes[-1]["held"]) == {f"s{i}" for i in range(SOURCES)}
    print(f"fail-over after SIGKILL: {takeover:.2f}s (lease_ttl {TTL}s)")
