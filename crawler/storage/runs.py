"""The last run of each source, and since when it has been failing, read from `crawler_jobs`.

What `crawler status` shows when no crawler runs, and what a running crawler shows for the
sources it has not run since it started. Runs of every instance count (several crawlers share
sources by leases). "Failing since" is the start of the oldest failure after the last
success, as far back as `storage.jobs_retention` keeps rows.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.errors import StoreError

if TYPE_CHECKING:
    from crawler.storage.postgres import Connection, PostgresStore


@dataclass(frozen=True)
class LastRun:
    """One source's last finished run, as `crawler_jobs` has it (times in Unix seconds)."""

    source: str
    status: str
    started_at: float
    finished_at: float | None
    pages: int
    records: int
    records_new: int | None  # None: a row from before these counts
    records_changed: int | None
    error: str | None
    failing_since: float | None  # a failing source: the start of its first failure in a row


_PG_LAST = """
SELECT DISTINCT ON (j.source) j.source, j.status, extract(epoch FROM j.started_at),
       extract(epoch FROM j.finished_at), j.pages, j.records, j.records_new, j.records_changed,
       j.error,
       (SELECT extract(epoch FROM min(f.started_at)) FROM crawler_jobs f
         WHERE f.source = j.source AND f.status = 'failure'
           AND f.started_at > coalesce((SELECT max(s.started_at) FROM crawler_jobs s
                                         WHERE s.source = j.source AND s.status = 'success'),
                                        '-infinity'))
  FROM crawler_jobs j
 WHERE j.source = ANY(%s) AND j.status <> 'running'
 ORDER BY j.source, j.started_at DESC
"""

_SQLITE_LAST = """
SELECT status, started_at, finished_at, pages, records, records_new, records_changed, error,
       (SELECT min(f.started_at) FROM crawler_jobs f
         WHERE f.source = j.source AND f.status = 'failure'
           AND f.started_at > coalesce((SELECT max(s.started_at) FROM crawler_jobs s
                                         WHERE s.source = j.source AND s.status = 'success'), ''))
  FROM crawler_jobs j
 WHERE j.source = ? AND j.status <> 'running'
 ORDER BY j.started_at DESC LIMIT 1
"""


def _last_run(source: str, row: Sequence[Any]) -> LastRun:
    status, started, finished, pages, records, new, changed, error, since = row
    return LastRun(
        source,
        status,
        _seconds(started) or 0.0,
        _seconds(finished),
        int(pages),
        int(records),
        None if new is None else int(new),
        None if changed is None else int(changed),
        error,
        _seconds(since) if status == "failure" else None,
    )


def _seconds(value: Any) -> float | None:
    """PostgreSQL's epoch (a Decimal) or SQLite's ISO 8601 text as Unix seconds."""
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    return float(value)


async def postgres_last_runs(store: PostgresStore, sources: Sequence[str]) -> dict[str, LastRun]:
    """The last runs in PostgreSQL; StoreError (or StoreUnavailable) when it cannot answer."""
    found: dict[str, LastRun] = {}

    async def work(conn: Connection) -> None:
        cur = await conn.execute(_PG_LAST, (list(sources),))
        for row in await cur.fetchall():
            found[row[0]] = _last_run(row[0], row[1:])

    await store.run(work)
    return found


async def sqlite_last_runs(path: Path, sources: Sequence[str]) -> dict[str, LastRun]:
    """The last runs in the embedded store, read on a connection of its own (WAL: never in
    the crawler's way); none when the file does not exist yet."""

    def read() -> dict[str, LastRun]:
        if not path.exists():
            return {}
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            found = {}
            for name in sources:
                row = conn.execute(_SQLITE_LAST, (name,)).fetchone()
                if row is not None:
                    found[name] = _last_run(name, row)
            return found
        finally:
            conn.close()

    try:
        return await asyncio.to_thread(read)
    except sqlite3.Error as exc:
        raise StoreError(f"embedded store {path}: {exc}") from exc
