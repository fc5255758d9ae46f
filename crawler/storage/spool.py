"""The local spool: where batches wait, durably, while PostgreSQL cannot be reached.

An SQLite file in WAL mode with `synchronous=FULL`: every commit fsyncs the WAL before
returning, so a batch that `add()` returned for survives `kill -9` *and* a power cut (with
`NORMAL`, a power cut could take back the last commits; the spool is small and written once a
batch, so the extra fsync costs little SD wear). A batch is one transaction, so it is in the
spool whole or not at all.

Rows leave the spool only after the PostgreSQL transaction holding them has committed
(`drain_once`); a crash between the two replays the batch, which the store's `(source, key)`
upsert and the runs' `run_id` absorb. The cap counts pages in use (not the file size, which
never shrinks): at the cap `add()` raises SpoolFull and nothing already spooled is touched.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from crawler.errors import SpoolFull, StoreDataError, StoreError
from crawler.lifecycle import Part
from crawler.record import Record, RunRow, dumps
from crawler.sqlite import SqliteWorker, migrate_sqlite, open_sqlite, transaction
from crawler.storage.embedded import SQLITE_DATA_ERRORS

SPOOL_MIGRATIONS = (
    """
    CREATE TABLE records (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        source     TEXT NOT NULL,
        key        TEXT NOT NULL,
        data       TEXT NOT NULL,
        spooled_at REAL NOT NULL
    );
    CREATE TABLE jobs (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        job        TEXT NOT NULL,
        spooled_at REAL NOT NULL
    );
    """,
    # 2: one name for a source run throughout (crawler_jobs keeps its name in PostgreSQL)
    """
    ALTER TABLE jobs RENAME TO runs;
    ALTER TABLE runs RENAME COLUMN job TO run;
    """,
    # 3: the page a record came from, so a record quarantined while draining names its URL
    """
    ALTER TABLE records ADD COLUMN url TEXT NOT NULL DEFAULT '';
    """,
)

# Per-row overhead of SQLite (row header, rowid, index entry), for estimating a batch's size.
_ROW_OVERHEAD = 40


class Spool(Part):
    """A durable FIFO of records and run rows, capped in bytes."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path, self.max_bytes = path, max_bytes
        self._conn: sqlite3.Connection | None = None
        self._worker = SqliteWorker("spool")
        self.records = 0  # cached depth, kept exact by add/remove
        self.runs = 0
        self.used_bytes = 0
        self.oldest: float | None = None
        self.refusing = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            await self._worker.run(self._open)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the spool {self.path}: {exc}") from exc

    def _open(self) -> None:
        conn = open_sqlite(self.path)
        migrate_sqlite(conn, SPOOL_MIGRATIONS)
        self._conn = conn
        self._refresh()

    async def close(self) -> None:
        if self._conn is not None:
            await self._worker.run(self._close)
        self._worker.shutdown()

    def _close(self) -> None:
        assert self._conn is not None
        # Fold the WAL back into the main file so the next start reads one file.
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()
        self._conn = None

    async def _call(self, fn: Any, *args: Any) -> Any:
        """Run on the spool's thread; sqlite3 errors (disk full, I/O) become StoreError here."""
        try:
            return await self._worker.run(fn, *args)
        except SQLITE_DATA_ERRORS as exc:  # this batch's data, not the card: quarantined
            raise StoreDataError(f"spool {self.path} refused the batch: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"spool {self.path}: {exc}") from exc

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("spool is not open")
        return self._conn

    def _refresh(self) -> None:
        c = self.conn
        self.records = c.execute("SELECT count(*) FROM records").fetchone()[0]
        self.runs = c.execute("SELECT count(*) FROM runs").fetchone()[0]
        self._refresh_oldest()
        self._refresh_bytes()

    def _refresh_oldest(self) -> None:
        # spooled_at grows with id, so the first row by id is the oldest: an O(1) read.
        c = self.conn
        times = [
            row[0]
            for row in (
                c.execute("SELECT spooled_at FROM records ORDER BY id LIMIT 1").fetchone(),
                c.execute("SELECT spooled_at FROM runs ORDER BY id LIMIT 1").fetchone(),
            )
            if row is not None
        ]
        self.oldest = float(min(times)) if times else None

    # -- readings ----------------------------------------------------------------------------

    @property
    def empty(self) -> bool:
        return self.records == 0 and self.runs == 0

    @property
    def full(self) -> bool:
        """At the cap, or the last batch offered was refused (until a drain makes room)."""
        return self.refusing or self.used_bytes >= self.max_bytes

    def file_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += Path(str(self.path) + suffix).stat().st_size
        return total

    def oldest_age(self) -> float:
        return max(0.0, time.time() - self.oldest) if self.oldest is not None else 0.0

    # -- writing -----------------------------------------------------------------------------

    async def add(self, records: Sequence[Record]) -> None:
        """Commit `records` to the spool, or raise SpoolFull and change nothing."""
        rows = [(r.source, r.key, dumps(r.data), r.url) for r in records]
        estimate = sum(len(s) + len(k) + len(d) + len(u) + _ROW_OVERHEAD for s, k, d, u in rows)
        if self.used_bytes + estimate > self.max_bytes:
            self.refusing = True
            raise SpoolFull(
                f"spool is full ({self.used_bytes} of {self.max_bytes} bytes used); "
                f"{len(rows)} records refused"
            )
        await self._call(self._add_records, rows)
        self.refusing = False

    def _add_records(self, rows: list[tuple[str, str, str, str]]) -> None:
        now = time.time()
        with transaction(self.conn, "BEGIN IMMEDIATE") as c:
            c.executemany(
                "INSERT INTO records (source, key, data, url, spooled_at) VALUES (?, ?, ?, ?, ?)",
                [(s, k, d, u, now) for s, k, d, u in rows],
            )
        self.records += len(rows)
        if self.oldest is None:
            self.oldest = now
        self._refresh_bytes()

    def _refresh_bytes(self) -> None:
        c = self.conn
        page_size = c.execute("PRAGMA page_size").fetchone()[0]
        pages = c.execute("PRAGMA page_count").fetchone()[0]
        free = c.execute("PRAGMA freelist_count").fetchone()[0]
        self.used_bytes = (pages - free) * page_size

    async def add_run(self, run: RunRow) -> None:
        """Run rows are small and always taken, even at the cap: they are the run's record."""
        await self._call(self._add_run, json.dumps(asdict(run)))

    def _add_run(self, text: str) -> None:
        now = time.time()
        c = self.conn
        c.execute("INSERT INTO runs (run, spooled_at) VALUES (?, ?)", (text, now))
        self.runs += 1
        if self.oldest is None:
            self.oldest = now
        self._refresh_bytes()

    # -- draining ----------------------------------------------------------------------------

    async def peek_records(self, limit: int) -> tuple[list[int], list[Record]]:
        """The oldest `limit` records with their spool ids (nothing is removed)."""
        return await self._call(self._peek_records, limit)  # type: ignore[no-any-return]

    def _peek_records(self, limit: int) -> tuple[list[int], list[Record]]:
        rows = self.conn.execute(
            "SELECT id, source, key, data, url FROM records ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return (
            [r[0] for r in rows],
            [Record(source=r[1], key=r[2], data=json.loads(r[3]), url=r[4]) for r in rows],
        )

    async def peek_runs(self, limit: int) -> tuple[list[int], list[RunRow]]:
        return await self._call(self._peek_runs, limit)  # type: ignore[no-any-return]

    def _peek_runs(self, limit: int) -> tuple[list[int], list[RunRow]]:
        rows = self.conn.execute(
            "SELECT id, run FROM runs ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [r[0] for r in rows], [RunRow(**json.loads(r[1])) for r in rows]

    async def remove(self, table: str, ids: list[int]) -> None:
        """Forget rows that PostgreSQL has committed."""
        await self._call(self._remove, table, ids)

    def _remove(self, table: str, ids: list[int]) -> None:
        if not ids:
            return
        assert table in ("records", "runs")
        c = self.conn
        # Ids are handed out in order and drained oldest first, so a range delete is exact.
        deleted = c.execute(
            f"DELETE FROM {table} WHERE id BETWEEN ? AND ?",
            (min(ids), max(ids)),
        ).rowcount
        self.refusing = False
        if table == "records":
            self.records -= deleted
        else:
            self.runs -= deleted
        self._refresh_oldest()
        self._refresh_bytes()

    def stats(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "jobs": self.runs,  # the key `crawler spool` and /readyz have always printed
            "used_bytes": self.used_bytes,
            "file_bytes": self.file_bytes(),
            "max_bytes": self.max_bytes,
            "oldest_age_seconds": round(self.oldest_age(), 1),
        }
