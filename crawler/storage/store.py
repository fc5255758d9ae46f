"""Storage: idempotent batches of records and one row per source run.

Two backends behind one interface (`Store`, chosen by `make_store`): PostgreSQL (psycopg 3, the
production store on the NAS, crawler/storage/postgres.py) and an embedded SQLite file
(crawler/storage/embedded.py) (no server at all; also what a fresh machine runs). A batch is
committed as one transaction; `(source, key)` is the primary key, so re-storing a record only
moves `last_seen` (and replaces `data` if it changed, resetting `processed` then, so downstream
jobs see the change). A record counts as stored only once `write()` has returned.

Schema changes are versioned migrations applied at start-up; PostgreSQL applies them under an
advisory lock so several crawlers starting together do not race.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from crawler.config.storage import StorageConfig
from crawler.record import Record, RunRow, Written


class Store(Protocol):
    """What the sink needs from a store, including the one capability it asks about.

    `remote`: the store is a server on the network (PostgreSQL). It can be away for a while
    (writes then raise StoreUnavailable), so the sink puts the spool in front of it and pings it
    to notice its return; several crawlers can share it, so they share sources by leases.
    """

    backend: str
    remote: bool
    history: frozenset[str]  # sources whose changed records are versioned (a reload sets it)

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def write(self, records: Sequence[Record]) -> Written: ...
    async def write_run(self, run: RunRow) -> None: ...
    async def ping(self) -> None: ...


def make_store(config: StorageConfig, history: frozenset[str] = frozenset()) -> Store:
    """The configured store; `history` names the sources whose changed records are versioned."""
    if config.dsn:
        from crawler.storage.postgres import PostgresStore

        return PostgresStore(config, history)
    from crawler.storage.embedded import SqliteStore

    assert config.sqlite_path is not None
    return SqliteStore(config.sqlite_path, history)
