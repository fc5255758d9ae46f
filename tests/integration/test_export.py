"""`crawler export`: stored records out as JSON lines or CSV from PostgreSQL and the embedded
store, streamed (a server-side cursor, bounded memory), and `--mark-processed` marking exactly
what was written."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.crawler_proc import run_cli
from tests.helpers import wait_for
from tests.site import ITEMS_PER_PAGE, Site, html_source, items

PAGES = 3


def write_config(site: Site, tmp_path: Path, dsn: str | None) -> Path:
    storage = f"storage: {{dsn: '{dsn}'}}\n" if dsn else ""
    path = tmp_path / "crawler.yaml"
    path.write_text(f"""\
state_dir: {tmp_path}/var
{storage}fetch: {{politeness_delay: 0s, robots: false}}
sources:
{html_source(site, "html", PAGES)}  - name: api
    every: 1h
    urls: ["{site.base}/api/{{0..{PAGES - 1}}}"]
    parser: json
    items: items
    fields: {{id: id, text: text}}
    key: [id]
""")
    return path


class Store:
    """SQL against whichever store the crawl wrote into."""

    def __init__(self, dsn: str | None, tmp_path: Path) -> None:
        self.dsn, self.path = dsn, tmp_path / "var" / "crawler.sqlite"

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.dsn:
            with psycopg.connect(self.dsn) as c:
                cur = c.execute(sql.replace("?", "%s"), params)
                return list(cur.fetchall()) if cur.description else []
        c = sqlite3.connect(self.path)
        try:
            with c:
                return c.execute(sql, params).fetchall()
        finally:
            c.close()

    def add_big(self, n: int) -> None:
        """`n` records of source html with 2 KB each: more than a pipe holds."""
        rows = [("html", f"big-{i:05}", json.dumps({"text": "x" * 2000})) for i in range(n)]
        if self.dsn:
            with psycopg.connect(self.dsn) as c, c.cursor() as cur:
                cur.executemany(
                    "INSERT INTO scraped_data (source, key, data) VALUES (%s, %s, %s)", rows
                )
            return
        now = "2026-01-01T00:00:00+00:00"
        c = sqlite3.connect(self.path)
        try:
            with c:
                c.executemany(
                    "INSERT INTO scraped_data (source, key, data, first_seen, last_seen)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(*r, now, now) for r in rows],
                )
        finally:
            c.close()

    def processed(self) -> set[tuple[str, str]]:
        return {
            (s, k) for s, k, p in self.rows("select source, key, processed from scraped_data") if p
        }


@pytest.fixture(params=["postgres", "sqlite"])
def crawled(request: pytest.FixtureRequest, site: Site, tmp_path: Path) -> tuple[Path, Store]:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    cfg = write_config(site, tmp_path, dsn)
    once = run_cli("once", "-c", str(cfg))
    assert once.returncode == 0, once.stdout + once.stderr
    return cfg, Store(dsn, tmp_path)


def test_jsonl_has_every_record_with_its_times(crawled: tuple[Path, Store]) -> None:
    cfg, store = crawled
    proc = run_cli("export", "-c", str(cfg))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 2 * PAGES * ITEMS_PER_PAGE
    assert [(r["source"], r["key"]) for r in lines] == sorted(
        (r["source"], r["key"]) for r in lines
    )
    one = next(r for r in lines if r["source"] == "html" and r["key"] == "p1-q2")
    assert one["data"] == {k: v for k, v in items(1)[2].items()}
    assert set(one) == {"source", "key", "first_seen", "last_seen", "data"}
    assert one["first_seen"] == one["last_seen"]
    assert one["first_seen"].endswith("+00:00") and one["first_seen"][:4] >= "2026"
    assert store.processed() == set()  # a plain export changes nothing


def test_csv_flattens_top_level_fields(crawled: tuple[Path, Store]) -> None:
    cfg, _ = crawled
    proc = run_cli("export", "-c", str(cfg), "html", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    reader = csv.reader(io.StringIO(proc.stdout))
    header = next(reader)
    # The record's columns, then the configured fields in their order.
    assert header == ["source", "key", "first_seen", "last_seen", "id", "text", "author", "tags"]
    rows = list(reader)
    assert len(rows) == PAGES * ITEMS_PER_PAGE
    by_key = {r[1]: r for r in rows}
    assert by_key["p0-q3"][4:] == ["p0-q3", "Quote 3 of page 0 v0", "Author 3", '["t0","t6"]']


def test_mark_processed_marks_exactly_what_was_exported(crawled: tuple[Path, Store]) -> None:
    cfg, store = crawled
    # Half of the html records are taken already; the api records are not asked for.
    store.rows(
        "update scraped_data set processed = ? where source = 'html' and substr(key, 1, 3) = 'p0-'",
        True,
    )
    before = store.processed()
    proc = run_cli("export", "-c", str(cfg), "html", "--unprocessed", "--mark-processed")
    assert proc.returncode == 0, proc.stderr
    exported = {(r["source"], r["key"]) for r in map(json.loads, proc.stdout.splitlines())}
    assert len(exported) == (PAGES - 1) * ITEMS_PER_PAGE
    assert not exported & before
    assert store.processed() == before | exported
    # The hand-off is done: nothing left unprocessed for html, the api source untouched.
    again = run_cli("export", "-c", str(cfg), "html", "--unprocessed")
    assert again.returncode == 0 and again.stdout == ""
    assert len(run_cli("export", "-c", str(cfg), "api", "--unprocessed").stdout.splitlines()) == 60


def test_output_file_appears_complete_and_a_failed_export_marks_nothing(
    crawled: tuple[Path, Store], tmp_path: Path
) -> None:
    cfg, store = crawled
    out = tmp_path / "out" / "records.csv"
    failed = run_cli("export", "-c", str(cfg), "-o", str(out), "--mark-processed")
    assert failed.returncode == 1  # the folder does not exist
    assert "nothing marked processed" in failed.stderr
    assert store.processed() == set()
    out.parent.mkdir()
    ok = run_cli("export", "-c", str(cfg), "--format", "csv", "-o", str(out), "--mark-processed")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == ""
    assert len(out.read_text().splitlines()) == 1 + 2 * PAGES * ITEMS_PER_PAGE
    assert list(out.parent.iterdir()) == [out]  # no partial file left
    assert len(store.processed()) == 2 * PAGES * ITEMS_PER_PAGE


def test_a_reader_that_stops_early_gets_no_marks(crawled: tuple[Path, Store]) -> None:
    cfg, store = crawled
    store.add_big(500)  # 1 MB: the export is still writing when its reader goes away
    proc = subprocess.Popen(
        [sys.executable, "-m", "crawler", "export", "-c", str(cfg), "--mark-processed"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 1
    assert json.loads(first)["source"] in ("api", "html")
    assert "the output was closed early: nothing marked processed" in err
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert store.processed() == set()


def test_since_selects_records_seen_lately(crawled: tuple[Path, Store]) -> None:
    cfg, store = crawled
    old = "2020-01-01T00:00:00+00:00"
    store.rows("update scraped_data set last_seen = ? where source = 'api'", old)
    proc = run_cli("export", "-c", str(cfg), "--since", "1h")
    assert {json.loads(line)["source"] for line in proc.stdout.splitlines()} == {"html"}
    everything = run_cli("export", "-c", str(cfg), "--since", "3650d")
    assert len(everything.stdout.splitlines()) == 2 * PAGES * ITEMS_PER_PAGE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuch"], "crawler: unknown source(s): nosuch"),
        (["--since", "soon"], "crawler: --since: 'soon' is not a duration"),
    ],
)
def test_argument_errors_exit_2(site: Site, tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_cli("export", "-c", str(write_config(site, tmp_path, None)), *args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_nothing_stored_yet_is_a_clear_error(site: Site, tmp_path: Path, pg_dsn: str) -> None:
    embedded = run_cli("export", "-c", str(write_config(site, tmp_path, None)))
    assert embedded.returncode == 1
    assert (
        "nothing stored yet" in embedded.stderr
        and "crawler.sqlite does not exist" in embedded.stderr
    )
    assert not (tmp_path / "var").exists()
    pg = run_cli("export", "-c", str(write_config(site, tmp_path, pg_dsn)))
    assert pg.returncode == 1
    assert "nothing stored yet: PostgreSQL has no scraped_data table" in pg.stderr


# --------------------------------------------------------------------------- PostgreSQL at scale

BIG = 100_000
PAYLOAD = 1200  # bytes of text per record: the whole table is ~125 MB of JSON


def fill(dsn: str, rows: int) -> None:
    from crawler.config.storage import StorageConfig
    from crawler.storage.postgres import PostgresStore

    async def migrate() -> None:
        store = PostgresStore(StorageConfig(dsn=dsn))
        await store.open()
        await store.close()

    asyncio.run(migrate())
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO scraped_data (source, key, data)"
            " SELECT 'big', lpad(i::text, 6, '0'),"
            "  jsonb_build_object('n', i, 'text', repeat(chr(97 + i %% 26), %s))"
            " FROM generate_series(1, %s) AS i",
            (PAYLOAD, rows),
        )


def config_for(tmp_path: Path, dsn: str) -> Path:
    path = tmp_path / "big.yaml"
    path.write_text(f"""\
state_dir: {tmp_path}/var
storage: {{dsn: '{dsn}'}}
sources:
  - {{name: big, every: 1h, url: "http://127.0.0.1:1/", fields: {{n: n, text: text}}, parser: json}}
""")
    return path


def activity(dsn: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        return list(
            conn.execute(
                "SELECT state, query FROM pg_stat_activity WHERE application_name = 'crawler-export'"
            ).fetchall()
        )


def run_blocked(args: list[str], check_while_blocked: Callable[[], None]) -> tuple[int, int, int]:
    """Run `crawler ARGS`, stop reading its stdout after the first line (so it blocks on a full
    pipe), call `check_while_blocked`, then read the rest. (exit status, lines, peak RSS KiB)"""
    proc = subprocess.Popen(
        [sys.executable, "-m", "crawler", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    lines = 1 if proc.stdout.readline() else 0
    check_while_blocked()
    for _ in proc.stdout:
        lines += 1
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(30)
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == 0, errors
    return proc.returncode, lines, usage.ru_maxrss


def test_100k_rows_stream_through_a_server_side_cursor_in_bounded_memory(
    tmp_path: Path, pg_dsn: str
) -> None:
    fill(pg_dsn, BIG)
    cfg = config_for(tmp_path, pg_dsn)
    seen: list[list[tuple[str, str]]] = []

    def while_blocked() -> None:
        # The export waits on the pipe with its transaction open; what it last sent the server
        # is a FETCH from its named cursor: rows come in batches, not all at once.
        seen.append(
            wait_for(lambda: [a for a in activity(pg_dsn) if a[0] == "idle in transaction"])
        )  # type: ignore[arg-type]

    _, lines, peak_kib = run_blocked(["export", "-c", str(cfg)], while_blocked)
    assert lines == BIG
    [(_, query)] = seen[0]
    assert query == 'FETCH FORWARD 1000 FROM "crawler_export_rows"'
    # ~125 MB of JSON went through; the process never held more than a small part of it.
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"


def test_mark_processed_locks_what_it_exports_and_leaves_newcomers(
    tmp_path: Path, pg_dsn: str
) -> None:
    fill(pg_dsn, 5000)
    cfg = config_for(tmp_path, pg_dsn)
    outcome: dict[str, Any] = {}

    def while_blocked() -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            # A record arriving during the export: neither exported nor marked.
            conn.execute(
                "INSERT INTO scraped_data (source, key, data) VALUES ('big', 'zz-new', '{}')"
            )
            # A crawler updating an exported record waits for the export's commit.
            conn.execute("SET lock_timeout = '300ms'")
            try:
                conn.execute("UPDATE scraped_data SET data = '{}' WHERE key = '000001'")
                outcome["update"] = "went through"
            except psycopg.errors.LockNotAvailable:
                outcome["update"] = "waited"

    _, lines, _ = run_blocked(
        ["export", "-c", str(cfg), "--unprocessed", "--mark-processed"], while_blocked
    )
    assert outcome["update"] == "waited"
    assert lines == 5000
    with psycopg.connect(pg_dsn) as conn:
        marked = conn.execute(
            "SELECT count(*) FILTER (WHERE processed), bool_or(processed) FILTER (WHERE key = 'zz-new')"
            " FROM scraped_data"
        ).fetchone()
    assert marked == (5000, False)
