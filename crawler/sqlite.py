"""SQLite plumbing shared by the embedded store, the spool and the HTTP state file.

One connection per file in WAL mode, versioned migrations in `PRAGMA user_version`, and one
dedicated thread per file so blocking calls never run on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def open_sqlite(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """An SQLite connection in WAL mode, for the embedded store and the spool.

    WAL with synchronous=FULL fsyncs the log on every commit, so a committed batch survives a
    power cut; batching keeps those fsyncs (and SD-card wear) to one per batch.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def migrate_sqlite(conn: sqlite3.Connection, migrations: Sequence[str]) -> None:
    """Apply the migrations past the file's `user_version`, each in its own transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, sql in enumerate(migrations, start=1):
        if number <= version:
            continue
        with transaction(conn, "BEGIN IMMEDIATE"):
            for statement in filter(str.strip, sql.split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, begin: str = "BEGIN") -> Iterator[sqlite3.Connection]:
    """One explicit transaction (the connections run in autocommit mode): commit, or roll back
    on any exception, cancellation included, and re-raise."""
    conn.execute(begin)
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class SqliteWorker:
    """Runs blocking SQLite calls on one dedicated thread, off the event loop."""

    def __init__(self, name: str) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
