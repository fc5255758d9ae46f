"""Retention: `crawler_jobs` and `scraped_data_history` stay bounded.

One row per source run (200 sources every 5 minutes is ~57,000 rows a day) and one per changed
record version would grow forever. Rows older than `storage.jobs_retention` /
`storage.history_retention` are deleted off the hot path: an hour after start-up and then hourly,
in batches of `BATCH` rows, each its own short transaction with a pause between, so a first
clean-up of millions of rows never holds a lock or the write path for long. With several
crawlers on one PostgreSQL, a transaction-level advisory lock lets one of them do it at a time.
Deleted rows are counted in `crawler_retention_deleted_rows_total{table}`. `scraped_data` itself
is the data and is never pruned here.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.errors import CrawlerError
from crawler.lifecycle import Part, stop_task
from crawler.observability.metrics import Metrics

if TYPE_CHECKING:
    from crawler.config.storage import StorageConfig

log = logging.getLogger("crawler.retention")

BATCH = 1000
PAUSE = 0.2  # seconds between batches: other transactions get the table in between
FIRST_AFTER = 3600.0  # not at start-up: a restart loop must not add work
EVERY = 3600.0
_LOCK_KEY = 0x63726177  # "craw": the advisory lock one crawler takes while it prunes

# (table, time column): what is pruned, by which key's age.
TABLES = {"crawler_jobs": "finished_at", "scraped_data_history": "seen_at"}

_PG_DELETE = """
DELETE FROM {table} WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM {table} WHERE {column} < now() - make_interval(secs => %s) LIMIT %s))
"""
_SQLITE_DELETE = """
DELETE FROM {table} WHERE rowid IN (
    SELECT rowid FROM {table} WHERE {column} < ? LIMIT ?)
"""


class Retention(Part):
    """Prunes old run rows and history versions in the background while the crawler serves."""

    def __init__(
        self,
        config: StorageConfig,
        metrics: Metrics,
        database: Any | None,
        *,
        first_after: float = FIRST_AFTER,
        every: float = EVERY,
    ) -> None:
        self.config, self.metrics, self.database = config, metrics, database
        self.first_after, self.every = first_after, every
        self.ages = {
            "crawler_jobs": config.jobs_retention,
            "scraped_data_history": config.history_retention,
        }
        self._task: asyncio.Task[None] | None = None
        for table in TABLES:
            metrics.retention_deleted.labels(table)

    async def open(self) -> None:
        if any(self.ages.values()):
            self._task = asyncio.create_task(self._loop(), name="retention")

    async def close(self) -> None:
        if self._task is not None:
            await stop_task(self._task)

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_after)
        while True:
            try:
                await self.prune()
            except CrawlerError as exc:  # the database away: next hour
                log.warning("retention skipped", extra={"error": str(exc)})
            await asyncio.sleep(self.every)

    async def prune(self) -> dict[str, int]:
        """Delete every row past its table's retention, batch by batch; rows deleted per table."""
        done: dict[str, int] = {}
        for table, column in TABLES.items():
            age = self.ages[table]
            if not age:
                continue
            total = 0
            while True:
                n = await self._batch(table, column, age)
                total += n
                self.metrics.retention_deleted.labels(table).inc(n)
                if n < BATCH:
                    break
                await asyncio.sleep(PAUSE)
            done[table] = total
            if total:
                log.info("retention", extra={"table": table, "deleted": total, "older_than_s": age})
        return done

    async def _batch(self, table: str, column: str, age: float) -> int:
        if self.database is not None:
            deleted = 0

            async def work(conn: Any) -> None:
                nonlocal deleted
                cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_LOCK_KEY,))
                if not (await cur.fetchone())[0]:
                    return  # another crawler is pruning: its turn
                if await _missing(conn, table):
                    return
                cur = await conn.execute(
                    _PG_DELETE.format(table=table, column=column), (age, BATCH)
                )
                deleted = cur.rowcount

            await self.database.run(work)
            return deleted
        return await asyncio.to_thread(
            self._sqlite_batch, self.config.sqlite_path, table, column, age
        )

    @staticmethod
    def _sqlite_batch(path: Path, table: str, column: str, age: float) -> int:
        # Its own short-lived connection: the store's writer keeps its own, WAL lets both work.
        conn = sqlite3.connect(path, timeout=30)
        try:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
            if not exists:
                return 0
            cutoff = _sqlite_time(conn, table, column, time.time() - age)
            with conn:
                cur = conn.execute(
                    _SQLITE_DELETE.format(table=table, column=column), (cutoff, BATCH)
                )
            return cur.rowcount
        except sqlite3.Error as exc:
            raise CrawlerError(f"retention on {path}: {exc}") from exc
        finally:
            conn.close()


async def _missing(conn: Any, table: str) -> bool:
    cur = await conn.execute("SELECT to_regclass(%s) IS NULL", (table,))
    return bool((await cur.fetchone())[0])


def _sqlite_time(conn: sqlite3.Connection, table: str, column: str, epoch: float) -> Any:
    """The cut-off in the column's own representation (ISO text or Unix seconds)."""
    sample = conn.execute(f"SELECT {column} FROM {table} LIMIT 1").fetchone()
    if sample is not None and isinstance(sample[0], (int, float)):
        return epoch
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()
