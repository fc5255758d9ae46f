"""Conditional-GET state: ETag, Last-Modified and a body hash per (source, URL), in SQLite.

With them, per URL: when its last successful fetch was committed (`fetched_at`, which
`follow.refresh_after` and `sitemap.changed_only` compare against), and for a listing page the
next page it led to (`next_url`, so a listing that did not change still leads on to the next).

Only these validators are kept, never bodies: the SD card is small. The card also wears, so a
row is written only when a value changed, and writes are batched (one commit for up to
`FLUSH_ROWS` rows, or after `FLUSH_AFTER` seconds, and on close).

The file is a cache. `synchronous=NORMAL` in WAL mode can lose the last commits on a power cut
but never corrupts the database; a lost row only costs one full fetch and extraction of that
URL. So it skips the fsync per commit that the spool and store need (they use FULL).

The key includes the source: two sources reading one URL must each see its body once.
Failures of this store never fail a fetch: they are logged and conditional GET is skipped.

Rows are written only for pages whose records (or, for a listing, whose detail pages) were
committed. `fetched_at` is rewritten at most once per `STAMP_EVERY` when nothing else changed
(more often only where `refresh_after`/`changed_only` need it exact), so an unchanged page costs
no write per run. Rows whose `fetched_at` is older than `PRUNE_AFTER` (URLs no run reaches any
more: pages 2..n of a cursor API whose cursors change, products gone from a catalogue) are
deleted at start-up and once a day, `PRUNE_BATCH` rows per transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from crawler.lifecycle import Part, stop_task
from crawler.sqlite import SqliteWorker, migrate_sqlite, open_sqlite, transaction

log = logging.getLogger("crawler.httpstate")

FLUSH_ROWS = 256
FLUSH_AFTER = 5.0
STAMP_EVERY = 86400.0
PRUNE_AFTER = 30 * 86400.0
PRUNE_BATCH = 500

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
    # Rows from before the stamp count as fetched now: pruned only if not seen for 30 days.
    """
    ALTER TABLE http_state ADD COLUMN fetched_at REAL;
    ALTER TABLE http_state ADD COLUMN next_url TEXT;
    UPDATE http_state SET fetched_at = CAST(strftime('%s', 'now') AS REAL);
    """,
    # The source's extraction definition the row was recorded under (crawler.config.diff):
    # rows from before it belong to no definition, so each URL is extracted once more.
    """
    ALTER TABLE http_state ADD COLUMN definition TEXT;
    """,
)


@dataclass(frozen=True)
class Validators:
    """What we know about the last body of a URL."""

    etag: str | None = None
    last_modified: str | None = None
    body_hash: bytes | None = None
    fetched_at: float | None = None  # Unix time the last successful fetch was committed
    next_url: str | None = None  # a listing page: the next page of its pagination
    # The extraction definition the page's records were made with: validators of another
    # definition do not spare the page's extraction (a field added must appear on a 304 page).
    definition: str | None = None

    def same_content(self, other: Validators | None) -> bool:
        """Equal but for the time stamp."""
        return other is not None and dataclasses.replace(other, fetched_at=self.fetched_at) == self

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
    old: Validators | None,
    status: int,
    etag: str | None,
    last_modified: str | None,
    body: bytes,
    conditional: bool = True,
) -> Revalidation | None:
    """The bookkeeping of one conditional GET's answer; None when there is nothing to record.

    A 304 keeps the body hash and refreshes any validator the server sent again. A full body is
    hashed: servers without validators (or with ones that change on every response) still get
    "not modified" when the bytes are the same. `conditional=False` (a full fetch asked for):
    an identical body is not "unchanged", but the validators are still kept.
    """
    if status == 304:
        if old is None:
            return None
        # The stamp and a listing's next page stay what they were.
        new = dataclasses.replace(
            old, etag=etag or old.etag, last_modified=last_modified or old.last_modified
        )
        return Revalidation(old, new, unchanged=False)
    digest = hashlib.blake2b(body, digest_size=16).digest()
    unchanged = conditional and old is not None and old.body_hash == digest
    return Revalidation(old, Validators(etag, last_modified, digest), unchanged)


_Key = tuple[str, str]


class HttpState(Part):
    """The validators store; `close()` (or leaving `async with`) flushes pending rows."""

    def __init__(self, path: Path, sources: frozenset[str] | None = None) -> None:
        self.path, self.sources = path, sources
        self._conn: sqlite3.Connection | None = None
        self._worker = SqliteWorker("http-state")
        self._pending: dict[_Key, Validators | None] = {}  # None: delete the row
        # Per source: the extraction definition of its run under way (crawler.config.diff; set
        # by the pipeline at a run's start, one run per source at a time). Rows are recorded
        # under it, and rows of another definition are not found (the page is extracted again).
        self.definitions: dict[str, str | None] = {}
        self._timer: asyncio.Task[None] | None = None
        self._flushing: asyncio.Task[None] | None = None
        self.writes = 0  # rows written (tests check the store writes only on change)
        self.commits = 0
        self.pruned = 0
        self._pruned_at = 0.0

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
            return
        await self.prune()

    async def prune(self, now: float | None = None) -> None:
        """Delete rows not stamped for `PRUNE_AFTER`, in small transactions."""
        conn = self._conn
        if conn is None:
            return
        now = time.time() if now is None else now
        self._pruned_at = now
        try:
            while True:
                n: int = await self._worker.run(_prune_batch, conn, now - PRUNE_AFTER)
                self.pruned += n
                if n < PRUNE_BATCH:
                    break
        except sqlite3.Error as exc:
            log.error("HTTP state prune failed", extra={"error": str(exc)})

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
        """What is known of the URL, if recorded under the extraction of the source's run."""
        definition = self.definitions.get(source)
        key = (source, url)
        if key in self._pending:
            pending = self._pending[key]
            return pending if pending is None or pending.definition == definition else None
        conn = self._conn
        if conn is None:
            return None

        def _get() -> Validators | None:
            row = conn.execute(
                "SELECT etag, last_modified, body_hash, fetched_at, next_url, definition"
                " FROM http_state WHERE source=? AND url=?",
                key,
            ).fetchone()
            return Validators(*row) if row else None

        try:
            result: Validators | None = await self._worker.run(_get)
        except sqlite3.Error as exc:
            log.error("HTTP state read failed", extra={"url": url, "error": str(exc)})
            return None
        if result is not None and result.definition != definition:
            return None  # recorded under another extraction: as if never fetched
        return result

    def put(
        self,
        source: str,
        url: str,
        old: Validators | None,
        new: Validators | None,
        stamp_every: float = STAMP_EVERY,
    ) -> None:
        """Remember `new` for the URL (None forgets it), under the extraction of the source's
        run; a no-op when it equals `old`, or differs only by a time stamp less than
        `stamp_every` newer."""
        if new is not None:
            new = dataclasses.replace(new, definition=self.definitions.get(source))
        if self._conn is None or old == new:
            return
        if (
            new is not None
            and old is not None
            and new.same_content(old)
            and new.fetched_at is not None
            and old.fetched_at is not None
            and new.fetched_at - old.fetched_at < stamp_every
        ):
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
        if time.time() - self._pruned_at > STAMP_EVERY:
            await self.prune()


def _write(conn: sqlite3.Connection, rows: dict[_Key, Validators | None]) -> None:
    with transaction(conn):
        for (source, url), v in rows.items():
            if v is None:
                conn.execute("DELETE FROM http_state WHERE source=? AND url=?", (source, url))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO http_state (source, url, etag, last_modified,"
                    " body_hash, fetched_at, next_url, definition) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        source,
                        url,
                        v.etag,
                        v.last_modified,
                        v.body_hash,
                        v.fetched_at,
                        v.next_url,
                        v.definition,
                    ),
                )


def _prune_batch(conn: sqlite3.Connection, before: float) -> int:
    cur = conn.execute(
        "DELETE FROM http_state WHERE (source, url) IN"
        " (SELECT source, url FROM http_state WHERE fetched_at < ? LIMIT ?)",
        (before, PRUNE_BATCH),
    )
    return int(cur.rowcount)
