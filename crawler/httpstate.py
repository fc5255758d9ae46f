"""Conditional-GET state: ETag, Last-Modified and a body hash per (source, URL), in SQLite.

Only these validators are kept, never bodies: the SD card is small. The card also wears, so a
row is written only when a value changed, and writes are batched (one commit for up to
`FLUSH_ROWS` rows, or after `FLUSH_AFTER` seconds, and on close).

The file is a cache. `synchronous=NORMAL` in WAL mode can lose the last commits on a power cut
but never corrupts the database; a lost row only costs one full fetch and extraction of that
URL. So it skips the fsync per commit that the spool and store need (they use FULL).

The key includes the source: two sources reading one URL must each see its body once.
Failures of this store never fail a fetch: they are logged and conditional GET is skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from crawler.lifecycle import Part, stop_task
from crawler.sqlite import SqliteWorker, migrate_sqlite, open_sqlite, transaction

log = logging.getLogger("crawler.httpstate")

FLUSH_ROWS = 256
FLUSH_AFTER = 5.0

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE http_state (
        source        TEXT NOT NULL,
        url           TEXT NOT NULL,
        etag          TEXT,
        last_modified TEXT,
        body_hash     BLOB,
        PRIMARY KEY (source, url)
    ) WITHOUT ROWID;
    """,
)


@dataclass(frozen=True)
class Validators:
    """What we know about the last body of a URL."""

    etag: str | None = None
    last_modified: str | None = None
    body_hash: bytes | None = None

    def headers(self) -> dict[str, str]:
        """The conditional request headers these validators allow."""
        h = {}
        if self.etag:
            h["If-None-Match"] = self.etag
        if self.last_modified:
            h["If-Modified-Since"] = self.last_modified
        return h


@dataclass(frozen=True)
class Revalidation:
    """What a response taught about a URL: the validators before it and the ones to record.

    `new` is recorded only by `HttpState.put()` once the page's records are committed (see
    `Fetcher.commit`), so "not modified" can never hide records that were not stored.
    """

    old: Validators | None
    new: Validators
    unchanged: bool  # a full body identical to the last one: as good as a 304


def revalidate(
    old: Validators | None, status: int, etag: str | None, last_modified: str | None, body: bytes
) -> Revalidation | None:
    """The bookkeeping of one conditional GET's answer; None when there is nothing to record.

    A 304 keeps the body hash and refreshes any validator the server sent again. A full body is
    hashed: servers without validators (or with ones that change on every response) still get
    "not modified" when the bytes are the same.
    """
    if status == 304:
        if old is None:
            return None
        new = Validators(etag or old.etag, last_modified or old.last_modified, old.body_hash)
        return Revalidation(old, new, unchanged=False)
    digest = hashlib.blake2b(body, digest_size=16).digest()
    unchanged = old is not None and old.body_hash == digest
    return Revalidation(old, Validators(etag, last_modified, digest), unchanged)


_Key = tuple[str, str]


class HttpState(Part):
    """The validators store; `close()` (or leaving `async with`) flushes pending rows."""

    def __init__(self, path: Path, sources: frozenset[str] | None = None) -> None:
        self.path, self.sources = path, sources
        self._conn: sqlite3.Connection | None = None
        self._worker = SqliteWorker("http-state")
        self._pending: dict[_Key, Validators | None] = {}  # None: delete the row
        self._timer: asyncio.Task[None] | None = None
        self._flushing: asyncio.Task[None] | None = None
        self.writes = 0  # rows written (tests check the store writes only on change)
        self.commits = 0

    async def open(self) -> None:
        def _open() -> sqlite3.Connection:
            conn = open_sqlite(self.path, synchronous="NORMAL")
            migrate_sqlite(conn, MIGRATIONS)
            if self.sources is not None:  # rows of sources no longer configured: dead weight
                marks = ",".join("?" * len(self.sources))
                conn.execute(
                    f"DELETE FROM http_state WHERE source NOT IN ({marks})", [*self.sources]
                )
            return conn

        try:
            self._conn = await self._worker.run(_open)
        except (sqlite3.Error, OSError) as exc:
            log.error(
                "cannot open the HTTP state store: fetching without conditional GET",
                extra={"path": str(self.path), "error": str(exc)},
            )
            self._conn = None

    @property
    def available(self) -> bool:
        return self._conn is not None

    async def close(self) -> None:
        if self._timer is not None:
            await stop_task(self._timer)
            self._timer = None
        await self.flush()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._worker.run(conn.close)
        self._worker.shutdown()

    async def get(self, source: str, url: str) -> Validators | None:
        key = (source, url)
        if key in self._pending:
            return self._pending[key]
        conn = self._conn
        if conn is None:
            return None

        def _get() -> Validators | None:
            row = conn.execute(
                "SELECT etag, last_modified, body_hash FROM http_state WHERE source=? AND url=?",
                key,
            ).fetchone()
            return Validators(row[0], row[1], row[2]) if row else None

        try:
            result: Validators | None = await self._worker.run(_get)
        except sqlite3.Error as exc:
            log.error("HTTP state read failed", extra={"url": url, "error": str(exc)})
            return None
        return result

    def put(self, source: str, url: str, old: Validators | None, new: Validators | None) -> None:
        """Remember `new` for the URL (None forgets it); a no-op when it equals `old`."""
        if self._conn is None or old == new:
            return
        self._pending[(source, url)] = new
        if len(self._pending) >= FLUSH_ROWS:
            self._start_flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._flush_later(), name="http-state-flush")

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH_AFTER)
        self._timer = None
        self._start_flush()

    def _start_flush(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self.flush(), name="http-state-flush")

    async def flush(self) -> None:
        """Commit every pending row in one transaction."""
        if self._flushing is not None and self._flushing is not asyncio.current_task():
            await asyncio.shield(self._flushing)
        while self._pending and self._conn is not None:
            batch, self._pending = self._pending, {}
            try:
                await self._worker.run(_write, self._conn, batch)
            except sqlite3.Error as exc:
                log.error(
                    "HTTP state write failed: these URLs will be fetched in full next time",
                    extra={"rows": len(batch), "error": str(exc)},
                )
                return
            self.writes += len(batch)
            self.commits += 1


def _write(conn: sqlite3.Connection, rows: dict[_Key, Validators | None]) -> None:
    with transaction(conn):
        for (source, url), v in rows.items():
            if v is None:
                conn.execute("DELETE FROM http_state WHERE source=? AND url=?", (source, url))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO http_state VALUES (?, ?, ?, ?, ?)",
                    (source, url, v.etag, v.last_modified, v.body_hash),
                )
