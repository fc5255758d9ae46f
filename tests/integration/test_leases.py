"""Several crawlers on one PostgreSQL: sources shared without overlap, fail-over when one dies,
and no overlap either while the database is slow to take record batches."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from tests.crawler_proc import CrawlerProcess, read_logs
from tests.helpers import wait_for, write_config
from tests.proxy import Proxy
from tests.site import Site, quote_source

SOURCES = 4
TTL = 3.0


def config(
    site: Site, tmp_path: Path, name: str, dsn: str, sources: int = SOURCES, every: str = "500ms"
) -> Path:
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
            quote_source(f"s{i}", [f"{site.base}/page/{i % 10}"], every=every)
            for i in range(sources)
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


def overlapping(rows: list[tuple[str, str, float, float]]) -> list[str]:
    """Runs of one source on two instances at overlapping times, described."""
    found = []
    for i, (src, inst, start, end) in enumerate(rows):
        for src2, inst2, start2, end2 in rows[i + 1 :]:
            if src2 == src and inst2 != inst and not (end <= start2 or end2 <= start):
                found.append(
                    f"{src} on {inst} {start:.1f}-{end:.1f}, {inst2} {start2:.1f}-{end2:.1f}"
                )
    return found


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
    assert not overlapping(runs(pg_dsn))
    # Bounded fail-over: the lease expires after TTL, and is taken at the next refresh (TTL/3).
    assert takeover <= TTL + TTL / 3 + 1.5, takeover
    changes = [e for e in read_logs(tmp_path / "b.log") if e["message"] == "leases changed"]
    assert changes and set(changes[-1]["held"]) == {f"s{i}" for i in range(SOURCES)}
    print(f"fail-over after SIGKILL: {takeover:.2f}s (lease_ttl {TTL}s)")


SLOW_SOURCES = 20
SLOW_SECONDS = 180.0
HOLD = 1.0  # per message of the record connection: a batch's five or so take longer than TTL


def test_slow_record_writes_do_not_let_leases_expire(
    site: Site, tmp_path: Path, pg_dsn: str, pg_proxy: Proxy
) -> None:
    """The NAS answers, slowly (a RAID scrub): every record batch is held longer than
    `lease_ttl`, but only the record connection is slowed. Leases live on a connection of
    their own, so no source runs on both crawlers at once over minutes of it, and both keep
    a fair share before, during and after."""
    dsn = pg_proxy.dsn(pg_dsn)
    a = CrawlerProcess(config(site, tmp_path, "pi-a", dsn, SLOW_SOURCES, "2s"), tmp_path / "a.log")
    b = CrawlerProcess(config(site, tmp_path, "pi-b", dsn, SLOW_SOURCES, "2s"), tmp_path / "b.log")
    try:

        def both_running() -> bool:
            recent = [r for r in runs(pg_dsn) if r[3] > time.time() - 3]
            return {r[1] for r in recent} == {"pi-a", "pi-b"}

        wait_for(both_running, timeout=60, interval=0.5)
        slow_from = time.time()
        pg_proxy.slow("crawler", HOLD)
        time.sleep(SLOW_SECONDS)
        pg_proxy.slow("crawler", 0)
        slow_to = time.time()
        # The runs of the slow minutes reach crawler_jobs late (spooled or queued); then a
        # steady window after the slowness shows the shares as they are now.
        time.sleep(4 * TTL)
        steady_from = time.time()
        time.sleep(20)
        steady_to = time.time()
    finally:
        code_a, code_b = a.stop(), b.stop()
    assert (code_a, code_b) == (0, 0)
    rows = runs(pg_dsn)
    found = overlapping(rows)
    assert not found, f"{len(found)} overlapping runs: {found[:3]}"
    during = [r for r in rows if slow_from <= r[2] and r[3] <= slow_to]
    assert {r[1] for r in during} == {"pi-a", "pi-b"}, "a crawler ran nothing while it was slow"
    after = [r for r in rows if steady_from <= r[2] and r[3] <= steady_to]
    share = {inst: {r[0] for r in after if r[1] == inst} for inst in ("pi-a", "pi-b")}
    assert share["pi-a"] | share["pi-b"] == {f"s{i}" for i in range(SLOW_SOURCES)}, share
    assert all(len(s) == SLOW_SOURCES // 2 for s in share.values()), share
    print(
        f"slow record connection for {SLOW_SECONDS:g}s: {len(during)} runs, 0 overlapping;"
        f" after: {len(share['pi-a'])}/{len(share['pi-b'])} sources"
    )
