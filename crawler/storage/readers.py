"""Stored records read out for `crawler export`, in constant memory: PostgreSQL through a
server-side cursor, SQLite through its lazy cursor (`PostgresReader`, `SqliteReader`), for a
`Selection`, with `--mark-processed` exact (see crawler/commands/export.py).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from crawler.config.storage import StorageConfig
from crawler.errors import StoreError

log = logging.getLogger("crawler.export")

BATCH = 1000  # rows per FETCH from the server-side cursor
META = ("source", "key", "first_seen", "last_seen")
# source, key, first_seen, last_seen (ISO 8601 text), data (JSON text)
Row = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class Selection:
    """Which stored records to export, and whether to mark them processed."""

    sources: tuple[str, ...] = ()  # empty: every source in the store
    since: float | None = None  # seconds: only records seen within this time
    unprocessed: bool = False
    mark: bool = False


# --------------------------------------------------------------------------- PostgreSQL


def _pg_filter(sel: Selection) -> tuple[str, list[Any]]:
    clauses, params = ["true"], list[Any]()
    if sel.sources:
        clauses.append("s.source = ANY(%s)")
        params.append(list(sel.sources))
    if sel.since is not None:
        clauses.append("s.last_seen >= now() - make_interval(secs => %s)")
        params.append(sel.since)
    if sel.unprocessed:
        clauses.append("NOT s.processed")
    return " AND ".join(clauses), params


class PostgresReader:
    """The selected rows of PostgreSQL, in one transaction: `columns()`, `rows()`, then
    `finish()` (marks, when asked, and commits). Leaving without `finish()` rolls back."""

    def __init__(self, storage: StorageConfig, sel: Selection) -> None:
        self.storage, self.sel = storage, sel
        self.conn: Any = None
        self.where, self.params = _pg_filter(sel)
        self.rows_from = "scraped_data s"

    @contextmanager
    def _errors(self) -> Iterator[None]:
        import psycopg

        try:
            yield
        except psycopg.errors.UndefinedTable as exc:
            raise StoreError("nothing stored yet: PostgreSQL has no scraped_data table") from exc
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: {str(exc).strip()}") from exc

    def __enter__(self) -> PostgresReader:
        import psycopg
        from psycopg import IsolationLevel

        try:
            self.conn = psycopg.connect(
                self.storage.dsn or "",
                password=self.storage.password,
                connect_timeout=max(1, int(self.storage.connect_timeout)),
                application_name="crawler-export",
            )
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {str(exc).strip()}") from exc
        with self._errors():
            if self.sel.mark:
                # Lock what will be exported, and remember exactly which rows those are.
                self.conn.execute(
                    "CREATE TEMP TABLE crawler_export (source text, key text,"
                    " PRIMARY KEY (source, key)) ON COMMIT DROP"
                )
                self.conn.execute(
                    "INSERT INTO crawler_export SELECT s.source, s.key FROM scraped_data s"
                    f" WHERE {self.where} FOR UPDATE",
                    self.params,
                )
                self.rows_from = "scraped_data s JOIN crawler_export USING (source, key)"
                self.where, self.params = "true", []
            else:
                # One snapshot for the columns and the rows; nothing written.
                self.conn.isolation_level = IsolationLevel.REPEATABLE_READ
                self.conn.read_only = True
            self.conn.execute("SET LOCAL TIME ZONE 'UTC'")
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()  # after finish(): committed; otherwise rolled back, nothing marked

    def columns(self) -> list[str]:
        """The top-level keys of the selected records' data."""
        with self._errors():
            keys = self.conn.execute(
                f"SELECT DISTINCT k FROM {self.rows_from}, jsonb_object_keys(CASE"
                " jsonb_typeof(s.data) WHEN 'object' THEN s.data ELSE '{}' END) AS k"
                f" WHERE {self.where}",
                self.params,
            )
            return [r[0] for r in keys]

    def rows(self) -> Iterator[Row]:
        """Every selected row, through a server-side cursor (`BATCH` rows per FETCH)."""
        with self._errors():
            cursor = self.conn.cursor(name="crawler_export_rows")
            cursor.itersize = BATCH
            cursor.execute(
                "SELECT s.source, s.key, s.first_seen, s.last_seen, s.data::text"
                f" FROM {self.rows_from} WHERE {self.where} ORDER BY s.source, s.key",
                self.params,
            )
            for source, key, first_seen, last_seen, data in cursor:
                yield (source, key, first_seen.isoformat(), last_seen.isoformat(), data)
            cursor.close()

    def finish(self) -> None:
        """Mark the exported rows processed (with `mark`) and commit."""
        with self._errors():
            if self.sel.mark:
                self.conn.execute(
                    "UPDATE scraped_data s SET processed = true FROM crawler_export e"
                    " WHERE s.source = e.source AND s.key = e.key"
                )
            self.conn.commit()


# --------------------------------------------------------------------------- SQLite


def _sqlite_filter(sel: Selection) -> tuple[str, list[Any]]:
    clauses, params = ["1"], list[Any]()
    if sel.sources:
        clauses.append(f"source IN ({','.join('?' * len(sel.sources))})")
        params += sel.sources
    if sel.since is not None:
        cutoff = datetime.fromtimestamp(time.time() - sel.since, timezone.utc).isoformat()
        clauses.append("last_seen >= ?")  # the store writes ISO 8601 in UTC: text order is time
        params.append(cutoff)
    if sel.unprocessed:
        clauses.append("NOT processed")
    return " AND ".join(clauses), params


class SqliteReader:
    """As `PostgresReader`, from the embedded store."""

    def __init__(self, path: Path, sel: Selection) -> None:
        self.path, self.sel = path, sel
        self.conn: sqlite3.Connection | None = None
        self.where, self.params = _sqlite_filter(sel)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store {self.path}: {exc}") from exc

    def __enter__(self) -> SqliteReader:
        if not self.path.exists():
            raise StoreError(f"nothing stored yet: {self.path} does not exist")
        mode = "rw" if self.sel.mark else "ro"
        with self._errors():
            self.conn = sqlite3.connect(
                f"file:{self.path}?mode={mode}", uri=True, isolation_level=None
            )
            self.conn.execute("PRAGMA busy_timeout=30000")
            # IMMEDIATE: the write lock now, so no record changes between export and mark; a
            # plain export reads one WAL snapshot and never blocks the crawler.
            self.conn.execute("BEGIN IMMEDIATE" if self.sel.mark else "BEGIN")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()  # without COMMIT: rolled back, nothing marked

    def columns(self) -> list[str]:
        assert self.conn is not None
        with self._errors():
            keys = self.conn.execute(
                "SELECT DISTINCT j.key FROM scraped_data, json_each(scraped_data.data) AS j"
                f" WHERE json_type(scraped_data.data) = 'object' AND {self.where}",
                self.params,
            )
            return [r[0] for r in keys]

    def rows(self) -> Iterator[Row]:
        assert self.conn is not None
        with self._errors():
            yield from self.conn.execute(
                "SELECT source, key, first_seen, last_seen, data FROM scraped_data"
                f" WHERE {self.where} ORDER BY source, key",
                self.params,
            )

    def finish(self) -> None:
        assert self.conn is not None
        with self._errors():
            if self.sel.mark:
                self.conn.execute(
                    f"UPDATE scraped_data SET processed = 1 WHERE {self.where}", self.params
                )
            self.conn.execute("COMMIT")
