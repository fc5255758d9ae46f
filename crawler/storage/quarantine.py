"""Quarantine: a record the store or the spool refuses for good is set aside alone, with why.

The second wall behind storable values (crawler/storable.py). When a write fails with
StoreDataError (the data, not the connection: see `PG_DATA_CLASSES` and `SQLITE_DATA_ERRORS`),
`isolate()` bisects the batch: each half is written again, a refused half is split again, and a
single refused record goes to the quarantine table with the error, source and URL. The rest of
the batch is stored; a batch with one bad record costs about 2·log2(batch) extra writes, and only
that batch: the happy path is the one write it always was.

The table lives in a local SQLite file: the spool's with PostgreSQL (so the drain moves past a
poisoned batch instead of failing on it forever), the embedded store's otherwise. It is created
with `IF NOT EXISTS` rather than a numbered migration because it sits in either file, and each
numbers its own. One row per `(source, key)`: the newest refused version of a record, with the
number of times it was refused. `crawler quarantine -c FILE` lists, retries or drops the rows.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler.errors import StoreDataError, StoreError
from crawler.record import Record
from crawler.sqlite import SqliteWorker, open_sqlite, transaction
from crawler.storable import clean_text

log = logging.getLogger("crawler.quarantine")

_TABLE = """
CREATE TABLE IF NOT EXISTS quarantine (
    source         TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    url            TEXT    NOT NULL,
    data           TEXT    NOT NULL,
    error          TEXT    NOT NULL,
    refused_by     TEXT    NOT NULL,
    quarantined_at REAL    NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (source, key)
)
"""
_ADD = """
INSERT INTO quarantine (source, key, url, data, error, refused_by, quarantined_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source, key) DO UPDATE SET url = excluded.url, data = excluded.data,
    error = excluded.error, refused_by = excluded.refused_by,
    quarantined_at = excluded.quarantined_at, attempts = quarantine.attempts + 1
"""
MAX_ERROR = 500  # characters of the error kept per row


def _ascii(text: str) -> str:
    # Escaped, so any text can be stored (a lone surrogate, NUL) and read back unchanged.
    return json.dumps(text)[1:-1]


@dataclass(frozen=True)
class Quarantined:
    """One quarantined record as the table holds it."""

    source: str
    key: str
    url: str
    data: Any
    error: str
    refused_by: str
    quarantined_at: float
    attempts: int

    @property
    def record(self) -> Record:
        return Record(source=self.source, key=self.key, data=self.data, url=self.url)


class Quarantine:
    """The quarantine table in a local SQLite file (the spool's or the embedded store's)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0  # cached count, for the gauge
        self._conn: sqlite3.Connection | None = None
        self._worker = SqliteWorker("quarantine")

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await self._worker.run(fn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"quarantine {self.path}: {exc}") from exc

    async def open(self) -> None:
        await self._call(self._open)

    def _open(self) -> None:
        self._conn = open_sqlite(self.path)
        self._conn.execute(_TABLE)
        self._count()

    def _count(self) -> None:
        assert self._conn is not None
        self.rows = self._conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]

    async def close(self) -> None:
        if self._conn is not None:
            await self._worker.run(self._conn.close)
            self._conn = None
        self._worker.shutdown()

    async def add(self, refused: Sequence[tuple[Record, str]], refused_by: str) -> None:
        """Set `refused` (record, error) aside; committed when this returns."""
        now = time.time()
        rows = [
            (
                _ascii(r.source),
                _ascii(r.key),
                _ascii(r.url),
                json.dumps(r.data),  # ASCII JSON: storable whatever the record holds
                clean_text(error)[:MAX_ERROR],
                refused_by,
                now,
            )
            for r, error in refused
        ]
        await self._call(self._add, rows)

    def _add(self, rows: list[tuple[Any, ...]]) -> None:
        assert self._conn is not None
        with transaction(self._conn) as c:
            c.executemany(_ADD, rows)
        self._count()

    async def entries(self) -> list[Quarantined]:
        """Every quarantined record, oldest first."""
        return await self._call(self._entries)  # type: ignore[no-any-return]

    def _entries(self) -> list[Quarantined]:
        assert self._conn is not None
        rows = self._conn.execute(
            "SELECT source, key, url, data, error, refused_by, quarantined_at, attempts"
            " FROM quarantine ORDER BY quarantined_at, source, key"
        ).fetchall()

        def text(escaped: str) -> str:
            return str(json.loads(f'"{escaped}"'))

        return [
            Quarantined(text(s), text(k), text(u), json.loads(d), e, by, at, n)
            for s, k, u, d, e, by, at, n in rows
        ]

    async def remove(self, records: Sequence[Record]) -> None:
        """Forget the quarantined rows of `records` (stored after all)."""
        keys = [(_ascii(r.source), _ascii(r.key)) for r in records]
        await self._call(self._remove, keys)

    def _remove(self, keys: list[tuple[str, str]]) -> None:
        assert self._conn is not None
        with transaction(self._conn) as c:
            c.executemany("DELETE FROM quarantine WHERE source = ? AND key = ?", keys)
        self._count()

    async def drop(self) -> int:
        """Delete every quarantined row; return how many there were."""
        return await self._call(self._drop)  # type: ignore[no-any-return]

    def _drop(self) -> int:
        assert self._conn is not None
        with transaction(self._conn) as c:
            n = int(c.execute("DELETE FROM quarantine").rowcount)
        self._count()
        return n


Write = Callable[[Sequence[Record]], Awaitable[object]]  # the store's or the spool's


@dataclass
class Isolation:
    """What bisecting a refused batch found so far (kept when the store goes away half-way)."""

    stored: list[Record] = field(default_factory=list)
    refused: list[tuple[Record, str]] = field(default_factory=list)

    def untouched(self, records: Sequence[Record]) -> list[Record]:
        """`records` that were neither stored nor refused yet."""
        done = {id(r) for r in self.stored} | {id(r) for r, _ in self.refused}
        return [r for r in records if id(r) not in done]


async def isolate(
    write: Write, records: Sequence[Record], error: StoreDataError, found: Isolation
) -> None:
    """Write `records`, which `write` refused as one batch with `error`, in ever smaller parts,
    until every record is stored or refused alone; `found` tells which. StoreUnavailable (or
    any other error) from `write` propagates, and `found` then tells what was done before."""

    async def split(part: Sequence[Record], why: str) -> None:
        if len(part) == 1:
            found.refused.append((part[0], why))
            return
        middle = len(part) // 2
        for half in (part[:middle], part[middle:]):
            try:
                await write(half)
            except StoreDataError as exc:
                await split(half, str(exc))
            else:
                found.stored.extend(half)

    await split(records, str(error))
