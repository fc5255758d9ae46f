"""The embedded store (`SqliteStore`): one SQLite file with PostgreSQL's semantics, the default
when no `storage.dsn` is set, so a fresh machine crawls with no server at all; its migrations.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from crawler.errors import StoreDataError, StoreError
from crawler.lifecycle import Part
from crawler.record import Record, RunRow, Written, dumps
from crawler.sqlite import SqliteWorker, migrate_sqlite, open_sqlite, transaction
from crawler.storage import history

if TYPE_CHECKING:  # psycopg is imported when first used: its import costs RSS on the Pi
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

    Connection = AsyncConnection[TupleRow]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


SQLITE_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE scraped_data (
        source      TEXT    NOT NULL,
        key         TEXT    NOT NULL,
        data        TEXT    NOT NULL,
        first_seen  TEXT    NOT NULL,
        last_seen   TEXT    NOT NULL,
        processed   INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (source, key)
    ) WITHOUT ROWID;
    CREATE TABLE crawler_jobs (
        id          INTEGER PRIMARY KEY,
        run_id      TEXT    UNIQUE,
        source      TEXT    NOT NULL,
        instance    TEXT    NOT NULL,
        status      TEXT    NOT NULL,
        started_at  TEXT    NOT NULL,
        finished_at TEXT,
        pages       INTEGER NOT NULL DEFAULT 0,
        records     INTEGER NOT NULL DEFAULT 0,
        error       TEXT
    );
    CREATE INDEX crawler_jobs_source_started ON crawler_jobs (source, started_at);
    """,
    history.SQLITE_MIGRATION,
    # 3: as PostgreSQL's 5 (crawler_jobs' finish time too: SQLite has no index on it yet)
    """
    CREATE INDEX scraped_data_first_seen ON scraped_data (source, first_seen);
    CREATE INDEX scraped_data_history_seen ON scraped_data_history (seen_at);
    CREATE INDEX crawler_jobs_finished ON crawler_jobs (finished_at);
    """,
    # 4: as PostgreSQL's 7 (a run's records new and changed; NULL in the rows from before)
    """
    ALTER TABLE crawler_jobs ADD COLUMN records_new INTEGER;
    ALTER TABLE crawler_jobs ADD COLUMN records_changed INTEGER;
    """,
)


# What SQLite refuses because of the data itself (a constraint or trigger, a value it cannot
# bind, text that is not UTF-8): retrying the same record cannot help, so it is quarantined.
SQLITE_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, UnicodeError)


class SqliteStore(Part):
    """The embedded store: one SQLite file, same semantics as PostgreSQL."""

    backend = "sqlite"
    remote = False

    def __init__(self, path: Path, history: frozenset[str] = frozenset()) -> None:
        self.path = path
        self.history = history  # sources whose changed records are kept as versions
        self._conn: sqlite3.Connection | None = None
        self._worker = SqliteWorker("sqlite-store")

    async def open(self) -> None:
        def _open() -> sqlite3.Connection:
            conn = open_sqlite(self.path)
            migrate_sqlite(conn, SQLITE_MIGRATIONS)
            return conn

        try:
            self._conn = await self._worker.run(_open)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the embedded store {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._conn is not None:
            await self._worker.run(self._conn.close)
            self._conn = None
        self._worker.shutdown()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("store is not open")
        return self._conn

    def _write(self, records: Sequence[Record]) -> Written:
        now = _iso(time.time())
        rows = [(r.source, r.key, dumps(r.data), now, now) for r in records]
        with transaction(self.conn) as conn:
            written = _classify(conn, rows)
            versioned = [row for row in rows if row[0] in self.history] if self.history else []
            if versioned:
                history.sqlite_insert(conn, versioned)
            conn.executemany(
                "INSERT INTO scraped_data (source, key, data, first_seen, last_seen)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (source, key) DO UPDATE SET last_seen = excluded.last_seen,"
                " processed = CASE WHEN scraped_data.data = excluded.data"
                "   THEN scraped_data.processed ELSE 0 END,"
                " data = excluded.data",
                rows,
            )
        return written

    async def write(self, records: Sequence[Record]) -> Written:
        """Upsert `records` in one transaction; how many keys were new and how many changed."""
        try:
            written: Written = await self._worker.run(self._write, records)
            return written
        except SQLITE_DATA_ERRORS as exc:
            raise StoreDataError(f"embedded store refused the batch: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store write failed: {exc}") from exc

    def _write_run(self, run: RunRow) -> None:
        self.conn.execute(
            "INSERT INTO crawler_jobs (run_id, source, instance, status, started_at, finished_at,"
            " pages, records, records_new, records_changed, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                run.run_id,
                run.source,
                run.instance,
                run.status,
                _iso(run.started_at),
                _iso(run.finished_at),
                run.pages,
                run.records,
                run.records_new,
                run.records_changed,
                run.error,
            ),
        )

    async def write_run(self, run: RunRow) -> None:
        try:
            await self._worker.run(self._write_run, run)
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store write failed: {exc}") from exc

    async def ping(self) -> None:
        """A local file is always there."""


def _classify(conn: sqlite3.Connection, rows: Sequence[tuple[str, str, str, str, str]]) -> Written:
    """Compare each key's last version in `rows` with its stored row, before the upsert: one
    primary-key lookup per key in the same transaction (a local file: microseconds each)."""
    last = {(source, key): data for source, key, data, _, _ in rows}
    new = changed = 0
    for (source, key), data in last.items():
        stored = conn.execute(
            "SELECT data FROM scraped_data WHERE source = ? AND key = ?", (source, key)
        ).fetchone()
        if stored is None:
            new += 1
        elif stored[0] != data:
            changed += 1
    return Written(new, changed)
