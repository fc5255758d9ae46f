"""Pipeline data exporter: what the data in PostgreSQL says, read at scrape time.

The crawler's own metrics say what the process did; this exporter says what
arrived, independent of any crawler process: rows per source, the newest
``last_seen``, the unprocessed backlog, failed ``crawler_jobs`` in the last hour
and table sizes. It runs next to the database (the NAS, in compose).

A scrape costs the same at ten thousand rows and at ten million: the per-source
figures are read from ``scraped_data_counts``, one row per source that triggers
on ``scraped_data`` keep exact in the transaction of every write (the crawler's
upserts, a downstream job's ``processed`` updates, deletes; migration 6 of the
crawler's PostgreSQL store). Failed jobs come from the index on
``crawler_jobs.finished_at`` (a day's rows), sizes from the catalogue. Only a
database the crawler has not migrated yet, without that table, is still counted
the old way, by reading ``scraped_data`` whole.

Each scrape opens one connection, runs a few aggregate queries inside a
read-only transaction and closes it, all under one hard deadline. A dead,
slow or hung database makes ``crawler_data_scrape_success`` 0 within the
deadline; a scrape never hangs and never fails with an HTTP error, so
Prometheus keeps seeing ``up == 1`` and the success gauge tells the story.

Tables that do not exist yet (a fresh database before the crawler's first
start) are not an error: their series are simply absent and
``crawler_data_scrape_success`` stays 1.

Run: ``python -m exporters.pipeline [--listen HOST:PORT] [--dsn-file FILE]``;
the DSN comes from ``PIPELINE_DSN`` or the file (``PIPELINE_DSN_FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger("exporters.pipeline")

DEFAULT_LISTEN: Final = "127.0.0.1:9411"
TABLES: Final = ("scraped_data", "crawler_jobs", "crawler_leases", "scraped_data_counts")

# Prometheus' default scrape_timeout is 10 s; answering well inside it keeps
# `up` at 1 and lets crawler_data_scrape_success carry the failure.
DEFAULT_TIMEOUT_SECONDS: Final = 5.0
# libpq rounds connect_timeout below 2 s up to 2 s.
MIN_CONNECT_TIMEOUT_SECONDS: Final = 2

# Exact, and as cheap as the number of sources: the triggers' per-source counts.
_COUNTS_SQL: Final = """
SELECT source, row_count, extract(epoch FROM newest_seen)::float8, unprocessed
FROM scraped_data_counts
"""
# A database from before migration 6 (no counts table yet): the whole table, once per scrape.
_SCRAPED_DATA_SQL: Final = """
SELECT source,
       count(*) AS rows,
       extract(epoch FROM max(last_seen))::float8 AS newest,
       count(*) FILTER (WHERE NOT processed) AS unprocessed
FROM scraped_data
GROUP BY source
"""
# Sources with a job in the last day get an explicit 0, so an alert on
# `> 0` resolves instead of the series vanishing.
_FAILED_JOBS_SQL: Final = """
SELECT source,
       count(*) FILTER (WHERE status = 'failure'
                        AND finished_at >= now() - interval '1 hour') AS failed
FROM crawler_jobs
WHERE finished_at >= now() - interval '1 day'
GROUP BY source
"""
_TABLE_BYTES_SQL: Final = """
SELECT t, pg_total_relation_size(to_regclass(t))
FROM unnest(%s::text[]) AS t
WHERE to_regclass(t) IS NOT NULL
"""


@dataclass
class Snapshot:
    """One scrape's worth of numbers read from the database."""

    rows: dict[str, int] = field(default_factory=dict)
    newest: dict[str, float] = field(default_factory=dict)
    unprocessed: dict[str, int] = field(default_factory=dict)
    failed_jobs: dict[str, int] = field(default_factory=dict)
    table_bytes: dict[str, int] = field(default_factory=dict)


async def read_snapshot(
    dsn: str, timeout: float, opened: list[psycopg.AsyncConnection[Any]] | None = None
) -> Snapshot:
    """Read every number in one short read-only transaction.

    The connection is appended to ``opened`` as soon as it exists, so that a
    caller whose deadline passes can cut it (see :func:`_cut`).
    """
    snap = Snapshot()
    statement_ms = max(1, int(timeout * 1000))
    conn = await psycopg.AsyncConnection.connect(
        dsn,
        connect_timeout=max(MIN_CONNECT_TIMEOUT_SECONDS, int(timeout)),
        application_name="crawler-pipeline-exporter",
        # Server-side guard too: a query stuck on a lock is cancelled by
        # PostgreSQL itself even if this client has already given up.
        options=f"-c statement_timeout={statement_ms} -c lock_timeout={statement_ms}",
        autocommit=True,
    )
    if opened is not None:
        opened.append(conn)
    async with conn:
        await _read(conn, snap)
    return snap


async def _read(conn: psycopg.AsyncConnection[Any], snap: Snapshot) -> None:
    async with conn.transaction():
        await conn.execute("SET TRANSACTION READ ONLY")
        cur = await conn.execute(_TABLE_BYTES_SQL, (list(TABLES),))
        for table, size in await cur.fetchall():
            snap.table_bytes[table] = int(size)
        if "scraped_data" in snap.table_bytes:
            counted = "scraped_data_counts" in snap.table_bytes
            cur = await conn.execute(_COUNTS_SQL if counted else _SCRAPED_DATA_SQL)
            for source, rows, newest, unprocessed in await cur.fetchall():
                snap.rows[source] = int(rows)
                if newest is not None:
                    snap.newest[source] = float(newest)
                snap.unprocessed[source] = int(unprocessed)
        if "crawler_jobs" in snap.table_bytes:
            cur = await conn.execute(_FAILED_JOBS_SQL)
            for source, failed in await cur.fetchall():
                snap.failed_jobs[source] = int(failed)
            for source in snap.rows:
                snap.failed_jobs.setdefault(source, 0)


def _cut(conn: psycopg.AsyncConnection[Any]) -> None:
    """Shut the connection's socket down so a pending read fails at once.

    Cancelling the task instead would make psycopg send a cancel request and
    wait for the server to confirm it, which takes many seconds on exactly the
    hung server that got us here.
    """
    with contextlib.suppress(OSError, psycopg.Error):
        fd = conn.pgconn.socket
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)


class PipelineCollector(Collector):
    """Pull-time collector: every scrape reads PostgreSQL afresh."""

    def __init__(self, dsn: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._dsn = dsn
        self._timeout = timeout

    def describe(self) -> Iterable[Metric]:
        # Without describe() prometheus_client would call collect() at
        # registration, i.e. query the database before serving anything.
        return self._families(None, 0.0, 0.0)

    def collect(self) -> Iterable[Metric]:
        start = time.monotonic()
        snap: Snapshot | None
        try:
            snap = asyncio.run(self._read_with_deadline())
        except Exception as exc:  # any failure is a failed scrape, reported as a metric
            log.warning("pipeline scrape failed: %s: %s", type(exc).__name__, exc)
            snap = None
        duration = time.monotonic() - start
        return self._families(snap, 1.0 if snap is not None else 0.0, duration)

    async def _read_with_deadline(self) -> Snapshot:
        # The hard deadline covers what connect_timeout and statement_timeout
        # cannot: a server (or network) that stops answering mid-query.
        opened: list[psycopg.AsyncConnection[Any]] = []
        task = asyncio.ensure_future(read_snapshot(self._dsn, self._timeout, opened))
        done, _ = await asyncio.wait({task}, timeout=self._timeout)
        if task in done:
            return task.result()
        if opened:
            _cut(opened[0])
        else:
            task.cancel()
        # The cut makes the task fail promptly; its outcome no longer matters.
        await asyncio.wait({task}, timeout=1.0)
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as lost
        raise TimeoutError(f"no answer from PostgreSQL within {self._timeout:g}s")

    @staticmethod
    def _families(snap: Snapshot | None, success: float, duration: float) -> list[Metric]:
        rows = GaugeMetricFamily(
            "crawler_data_rows", "Rows in scraped_data per source.", labels=["source"]
        )
        newest = GaugeMetricFamily(
            "crawler_data_newest_seen_timestamp_seconds",
            "Newest last_seen in scraped_data per source (Unix time).",
            labels=["source"],
        )
        unprocessed = GaugeMetricFamily(
            "crawler_data_unprocessed_rows",
            "Rows in scraped_data not yet processed downstream (processed = false).",
            labels=["source"],
        )
        failed = GaugeMetricFamily(
            "crawler_data_failed_jobs_last_hour",
            "crawler_jobs with status failure that finished in the last hour.",
            labels=["source"],
        )
        table_bytes = GaugeMetricFamily(
            "crawler_data_table_bytes",
            "Total size of a pipeline table including indexes and TOAST.",
            labels=["table"],
        )
        if snap is not None:
            for source, value in sorted(snap.rows.items()):
                rows.add_metric([source], value)
            for source, ts in sorted(snap.newest.items()):
                newest.add_metric([source], ts)
            for source, value in sorted(snap.unprocessed.items()):
                unprocessed.add_metric([source], value)
            for source, value in sorted(snap.failed_jobs.items()):
                failed.add_metric([source], value)
            for table, size in sorted(snap.table_bytes.items()):
                table_bytes.add_metric([table], size)
        return [
            rows,
            newest,
            unprocessed,
            failed,
            table_bytes,
            GaugeMetricFamily(
                "crawler_data_scrape_success",
                "1 if the last read of PostgreSQL succeeded, 0 if not.",
                value=success,
            ),
            GaugeMetricFamily(
                "crawler_data_scrape_duration_seconds",
                "Time taken by the last read of PostgreSQL.",
                value=duration,
            ),
        ]


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9411`` for IPv6) as a bind address and port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"listen address must be HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def load_dsn(dsn_file: Path | None) -> str:
    """The DSN from ``PIPELINE_DSN``, else from the file (first line, stripped)."""
    dsn = os.environ.get("PIPELINE_DSN", "").strip()
    if dsn:
        return dsn
    if dsn_file is not None:
        return dsn_file.read_text(encoding="utf-8").strip()
    raise SystemExit("pipeline exporter: set PIPELINE_DSN or --dsn-file / PIPELINE_DSN_FILE")


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value) if value else None


def build_registry(dsn: str, timeout: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(PipelineCollector(dsn, timeout))
    return registry


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exporters.pipeline",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=os.environ.get("PIPELINE_LISTEN", DEFAULT_LISTEN),
        help=f"HOST:PORT to serve /metrics on (env PIPELINE_LISTEN, default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--dsn-file",
        type=Path,
        default=_env_path("PIPELINE_DSN_FILE"),
        help="file holding the DSN when PIPELINE_DSN is unset (env PIPELINE_DSN_FILE)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("PIPELINE_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS)),
        help="hard limit on one database read, seconds (env PIPELINE_TIMEOUT_SECONDS)",
    )
    args = parser.parse_args(argv)
    listen = args.listen if isinstance(args.listen, tuple) else parse_listen(args.listen)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    dsn = load_dsn(args.dsn_file)
    registry = build_registry(dsn, args.timeout)
    # Also export the process_* / python_* metrics of the default registry.
    registry.register(_DefaultCollectors())
    server, thread = start_http_server(listen[1], addr=listen[0], registry=registry)
    log.info("serving /metrics on %s:%d", *listen)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    thread.join(timeout=5)
    return 0


class _DefaultCollectors(Collector):
    """The default registry's process and platform collectors, re-exported."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


if __name__ == "__main__":
    sys.exit(main())
