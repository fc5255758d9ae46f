"""Exporters: the Pi throttling parser and textfile, and the pipeline exporter
against a real PostgreSQL (values match the rows; a slow or dead database gives
crawler_data_scrape_success 0 quickly, never a hung scrape)."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crawler.config.storage import StorageConfig
from crawler.record import Record
from crawler.storage.postgres import PG_MIGRATIONS, PostgresStore
from exporters import pipeline, throttled
from tests.helpers import free_port, wait_for
from tests.proxy import Proxy

ROOT = Path(__file__).resolve().parents[2]

# The schema of the contract (crawler migrations own the real one).
SCHEMA = """
CREATE TABLE scraped_data (
    source text NOT NULL, key text NOT NULL, data jsonb,
    first_seen timestamptz, last_seen timestamptz,
    processed boolean NOT NULL DEFAULT false,
    PRIMARY KEY (source, key));
CREATE TABLE crawler_jobs (
    id bigserial PRIMARY KEY, source text, instance text, status text,
    started_at timestamptz, finished_at timestamptz,
    pages integer, records integer, error text);
CREATE TABLE crawler_leases (source text PRIMARY KEY, holder text, expires_at timestamptz);
"""


# ---------------------------------------------------------------- throttling

FLAG_NAMES = ["under_voltage", "freq_capped", "throttled", "soft_temp_limit"]
ALL_BITS = [0, 1, 2, 3, 16, 17, 18, 19]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.mark.parametrize("combo", range(256))
def test_throttled_every_flag_combination(combo: int) -> None:
    value = sum(1 << bit for i, bit in enumerate(ALL_BITS) if combo >> i & 1)
    got = samples(throttled.render(value))
    assert got[("rpi_throttled_raw", ())] == value
    assert len(got) == 9  # 8 flags + raw: no more, no less
    for i, name in enumerate(FLAG_NAMES):
        now = got[("rpi_throttled_flag", (("flag", name), ("when", "now")))]
        boot = got[("rpi_throttled_flag", (("flag", name), ("when", "since_boot")))]
        assert now == (1 if value >> i & 1 else 0)
        assert boot == (1 if value >> (i + 16) & 1 else 0)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("throttled=0x0\n", 0),
        ("throttled=0x50005\n", 0x50005),
        ("throttled=0x80008", 0x80008),
        ("50005\n", 0x50005),  # the sysfs attribute prints bare hex
        ("0\n", 0),
        ("e000f\n", 0xE000F),
    ],
)
def test_throttled_parse_both_sources(text: str, value: int) -> None:
    assert throttled.parse(text) == value


@pytest.mark.parametrize("text", ["", "throttled=", 'error=1 error_msg="x"', "0xZZ"])
def test_throttled_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(throttled.ThrottledError):
        throttled.parse(text)


def test_throttled_known_examples() -> None:
    # 0x50005: under-voltage and throttled now, both latched since boot.
    f = throttled.flags(0x50005)
    assert {k for k, v in f.items() if v} == {
        ("under_voltage", "now"),
        ("throttled", "now"),
        ("under_voltage", "since_boot"),
        ("throttled", "since_boot"),
    }


def fake_vcgencmd(tmp_path: Path, body: str) -> str:
    script = tmp_path / "vcgencmd"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


def test_throttled_main_writes_textfile_atomically(tmp_path: Path) -> None:
    out = tmp_path / "rpi_throttled.prom"
    vc = fake_vcgencmd(tmp_path, 'echo "throttled=0x50000"')
    assert throttled.main(["--output", str(out), "--vcgencmd", vc]) == 0
    got = samples(out.read_text())
    assert got[("rpi_throttled_raw", ())] == 0x50000
    assert got[("rpi_throttled_flag", (("flag", "under_voltage"), ("when", "since_boot")))] == 1
    assert got[("rpi_throttled_flag", (("flag", "under_voltage"), ("when", "now")))] == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rpi_throttled.prom", "vcgencmd"]


def test_throttled_falls_back_to_sysfs_then_removes_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "rpi_throttled.prom"
    sysfs = tmp_path / "get_throttled"
    sysfs.write_text("80008\n")
    missing = str(tmp_path / "no-vcgencmd")
    assert throttled.main(["--output", str(out), "--vcgencmd", missing, "--sysfs", str(sysfs)]) == 0
    assert samples(out.read_text())[("rpi_throttled_raw", ())] == 0x80008
    # Neither source: no stale numbers left for node_exporter to serve.
    failing = fake_vcgencmd(tmp_path, "echo 'VCHI initialization failed' >&2; exit 1")
    sysfs.unlink()
    assert throttled.main(["--output", str(out), "--vcgencmd", failing, "--sysfs", str(sysfs)]) == 1
    assert not out.exists()


def test_throttled_runs_as_a_plain_script_with_system_python(tmp_path: Path) -> None:
    # deploy/ installs the file alone and runs it with /usr/bin/python3.
    out = tmp_path / "x.prom"
    proc = subprocess.run(
        [
            "/usr/bin/python3",
            str(ROOT / "exporters" / "throttled.py"),
            "--output",
            str(out),
            "--value",
            "throttled=0x4",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        samples(out.read_text())[("rpi_throttled_flag", (("flag", "throttled"), ("when", "now")))]
        == 1
    )


def test_throttled_output_passes_promtool(tmp_path: Path) -> None:
    out = tmp_path / "x.prom"
    out.write_text(throttled.render(0xF000F))
    proc = subprocess.run(
        ["promtool", "check", "metrics"],
        input=out.read_text(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- pipeline


def scrape(dsn: str, timeout: float = 3.0) -> tuple[dict, float]:
    registry = pipeline.build_registry(dsn, timeout)
    start = time.monotonic()
    got = {}
    for family in registry.collect():
        for s in family.samples:
            got[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return got, time.monotonic() - start


def value(got: dict, name: str, **labels: str) -> float:
    return got[(name, tuple(sorted(labels.items())))]


def test_pipeline_values_match_rows(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute(
            """
            INSERT INTO scraped_data (source, key, data, first_seen, last_seen, processed)
            SELECT 'a', 'k' || i, '{}', now(), '2026-01-01 00:00:00+00'::timestamptz
                   + make_interval(secs => i), i <= 3
            FROM generate_series(1, 10) AS i;
            INSERT INTO scraped_data (source, key, data, first_seen, last_seen, processed)
            VALUES ('b', 'x', '{}', now(), '2026-02-01 12:00:00+00', true);
            INSERT INTO crawler_jobs (source, instance, status, started_at, finished_at) VALUES
              ('a', 'pi1', 'failure', now() - interval '10 min', now() - interval '9 min'),
              ('a', 'pi1', 'failure', now() - interval '50 min', now() - interval '49 min'),
              ('a', 'pi1', 'failure', now() - interval '3 hours', now() - interval '3 hours'),
              ('a', 'pi1', 'success', now() - interval '5 min', now() - interval '4 min'),
              ('a', 'pi1', 'running', now() - interval '1 min', NULL),
              ('c', 'pi2', 'failure', now() - interval '20 min', now() - interval '19 min');
            """
        )
        sizes = dict(
            conn.execute(
                "SELECT t, pg_total_relation_size(t::regclass) FROM unnest(ARRAY"
                "['scraped_data','crawler_jobs','crawler_leases']) t"
            ).fetchall()
        )
    got, _ = scrape(pg_dsn)
    assert value(got, "crawler_data_scrape_success") == 1
    assert value(got, "crawler_data_rows", source="a") == 10
    assert value(got, "crawler_data_rows", source="b") == 1
    assert value(got, "crawler_data_unprocessed_rows", source="a") == 7
    assert value(got, "crawler_data_unprocessed_rows", source="b") == 0
    assert value(got, "crawler_data_newest_seen_timestamp_seconds", source="a") == 1767225600 + 10
    assert value(got, "crawler_data_newest_seen_timestamp_seconds", source="b") == 1769947200
    assert value(got, "crawler_data_failed_jobs_last_hour", source="a") == 2
    assert value(got, "crawler_data_failed_jobs_last_hour", source="b") == 0  # explicit zero
    assert value(got, "crawler_data_failed_jobs_last_hour", source="c") == 1  # jobs but no rows
    for table, size in sizes.items():
        assert value(got, "crawler_data_table_bytes", table=table) == size > 0
    assert 0 < value(got, "crawler_data_scrape_duration_seconds") < 3


def test_pipeline_tolerates_missing_tables(pg_dsn: str) -> None:
    got, _ = scrape(pg_dsn)
    assert value(got, "crawler_data_scrape_success") == 1
    assert not [
        k
        for k in got
        if k[0] not in ("crawler_data_scrape_success", "crawler_data_scrape_duration_seconds")
    ]
    # Only some tables: what exists is reported.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE crawler_jobs (id bigserial PRIMARY KEY, source text,"
            " instance text, status text, started_at timestamptz,"
            " finished_at timestamptz, pages integer, records integer, error text)"
        )
    got, _ = scrape(pg_dsn)
    assert value(got, "crawler_data_scrape_success") == 1
    assert ("crawler_data_table_bytes", (("table", "crawler_jobs"),)) in got
    assert ("crawler_data_table_bytes", (("table", "scraped_data"),)) not in got


def test_pipeline_dead_database_fails_fast() -> None:
    port = free_port()  # nothing listens: connection refused
    got, took = scrape(f"postgresql://postgres@127.0.0.1:{port}/x", timeout=3.0)
    assert value(got, "crawler_data_scrape_success") == 0
    assert ("crawler_data_rows", (("source", "a"),)) not in got
    assert took < 2


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A TCP listener that accepts connections and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(sock.getsockname()[1])
    stop.set()
    t.join()
    for c in held:
        c.close()
    sock.close()


def test_pipeline_silent_server_fails_within_deadline(black_hole: int) -> None:
    got, took = scrape(f"postgresql://postgres@127.0.0.1:{black_hole}/x", timeout=2.0)
    assert value(got, "crawler_data_scrape_success") == 0
    assert took < 4


def test_pipeline_locked_table_fails_within_deadline(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    # An ACCESS EXCLUSIVE lock (as a long migration or VACUUM FULL would
    # take) blocks every reader: only the timeouts can end the scrape.
    locker = psycopg.connect(pg_dsn)
    try:
        locker.execute("LOCK TABLE scraped_data IN ACCESS EXCLUSIVE MODE")
        got, took = scrape(pg_dsn, timeout=2.0)
        assert value(got, "crawler_data_scrape_success") == 0
        assert took < 4
    finally:
        locker.rollback()
        locker.close()
    got, _ = scrape(pg_dsn, timeout=2.0)
    assert value(got, "crawler_data_scrape_success") == 1


def test_pipeline_hang_mid_query_fails_within_deadline(pg_dsn: str) -> None:
    port = int(pg_dsn.rsplit(":", 1)[1].split("/")[0])
    with Proxy(port, freeze_on_query=True) as proxy:
        got, took = scrape(proxy.dsn(pg_dsn), timeout=2.0)
        assert proxy.frozen.is_set()  # the connection got as far as a query
        assert value(got, "crawler_data_scrape_success") == 0
        assert 1.5 < took < 4


def test_pipeline_serves_http(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute("INSERT INTO scraped_data (source, key, last_seen) VALUES ('s', 'k', now())")
    port = free_port()
    env = {**os.environ, "PIPELINE_DSN": pg_dsn, "PIPELINE_LISTEN": f"127.0.0.1:{port}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporters.pipeline"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def fetch() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    return r.read().decode()
            except OSError:
                return None

        body = wait_for(fetch, timeout=20)
        assert isinstance(body, str)
        assert 'crawler_data_rows{source="s"} 1.0' in body
        assert "crawler_data_scrape_success 1.0" in body
        assert "process_resident_memory_bytes" in body
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out


def test_pipeline_dsn_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPELINE_DSN", raising=False)
    f = tmp_path / "dsn"
    f.write_text("postgresql://u@h/db\n")
    assert pipeline.load_dsn(f) == "postgresql://u@h/db"
    monkeypatch.setenv("PIPELINE_DSN", "postgresql://env@h/db")
    assert pipeline.load_dsn(f) == "postgresql://env@h/db"
    assert pipeline.parse_listen("0.0.0.0:9411") == ("0.0.0.0", 9411)
    assert pipeline.parse_listen("[::1]:9411") == ("::1", 9411)


# ------------------------------------------- pipeline: counts kept by the crawler's migration


def exact(dsn: str) -> dict[str, tuple[int, int, float]]:
    """Per source (rows, unprocessed, newest last_seen) as the whole table says."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select source, count(*), count(*) filter (where not processed),"
            " extract(epoch from max(last_seen))::float8 from scraped_data group by source"
        ).fetchall()
    return {source: (n, unprocessed, newest) for source, n, unprocessed, newest in rows}


def exported(dsn: str) -> dict[str, tuple[int, int, float]]:
    """The exporter's per-source figures, read from the counts table the triggers keep."""
    got, _ = scrape(dsn)
    assert value(got, "crawler_data_scrape_success") == 1
    assert ("crawler_data_table_bytes", (("table", "scraped_data_counts"),)) in got
    return {
        labels[0][1]: (
            int(v),
            int(value(got, "crawler_data_unprocessed_rows", source=labels[0][1])),
            value(got, "crawler_data_newest_seen_timestamp_seconds", source=labels[0][1]),
        )
        for (name, labels), v in got.items()
        if name == "crawler_data_rows" and v > 0
    }


def test_pipeline_counts_migrate_an_existing_database(pg_dsn: str) -> None:
    """A database at migration 5 with rows in it: migration 6 counts them once, exactly."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE crawler_schema_migrations"
            " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, sql in enumerate(PG_MIGRATIONS[:5], start=1):
            conn.execute(sql)
            conn.execute("INSERT INTO crawler_schema_migrations (version) VALUES (%s)", [version])
        conn.execute(
            "INSERT INTO scraped_data (source, key, data, last_seen, processed)"
            " SELECT 's' || (i % 3), i::text, '{}', now() - i * interval '1 minute', i % 4 = 0"
            " FROM generate_series(1, 500) AS i"
        )
    before = exact(pg_dsn)
    store = PostgresStore(StorageConfig(dsn=pg_dsn))
    asyncio.run(store.open())
    asyncio.run(store.close())
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("select max(version) from crawler_schema_migrations").fetchone() == (
            len(PG_MIGRATIONS),
        )
    assert exported(pg_dsn) == before and len(before) == 3


def test_pipeline_counts_follow_every_write(pg_dsn: str) -> None:
    """The crawler's upserts (new, unchanged and changed records), a downstream job marking
    rows processed under a role of its own, deletes and TRUNCATE: after each, the exporter's
    figures are the table's."""
    store = PostgresStore(StorageConfig(dsn=pg_dsn))

    async def write(records: list[Record]) -> None:
        await store.open()
        try:
            await store.write(records)
        finally:
            await store.close()

    asyncio.run(write([Record(f"s{i % 2}", f"k{i}", {"v": i}) for i in range(40)]))
    assert (
        exported(pg_dsn)
        == exact(pg_dsn)
        == {
            "s0": (20, 20, pytest.approx(time.time(), abs=60)),
            "s1": (20, 20, pytest.approx(time.time(), abs=60)),
        }
    )
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # A downstream job's role may mark rows processed and nothing more.
        conn.execute("CREATE ROLE downstream_job")
        conn.execute("GRANT SELECT, UPDATE (processed) ON scraped_data TO downstream_job")
        conn.execute("SET ROLE downstream_job")
        conn.execute("UPDATE scraped_data SET processed = true WHERE key < 'k3'")
        conn.execute("RESET ROLE")
    assert exported(pg_dsn) == exact(pg_dsn)
    assert exact(pg_dsn)["s0"][1] < 20
    # Unchanged records keep `processed`; changed ones are unprocessed again; one new source.
    asyncio.run(
        write(
            [Record("s0", f"k{i}", {"v": i}) for i in range(0, 40, 2)]
            + [Record("s1", "k1", {"v": "changed"}), Record("s2", "x", {})]
        )
    )
    assert exported(pg_dsn) == exact(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM scraped_data WHERE source = 's1' AND key > 'k2'")
    assert exported(pg_dsn) == exact(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM scraped_data WHERE source = 's2'")
        conn.execute("INSERT INTO scraped_data (source, key, data) VALUES ('s3', 'a', '{}')")
    assert exported(pg_dsn) == exact(pg_dsn)
    got, _ = scrape(pg_dsn)
    assert value(got, "crawler_data_rows", source="s2") == 0  # emptied: 0, not stale
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE scraped_data")
    assert exported(pg_dsn) == exact(pg_dsn) == {}
