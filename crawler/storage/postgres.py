"""The PostgreSQL store (`PostgresStore`, psycopg 3): the production store on the NAS, its
versioned migrations (applied under an advisory lock, so crawlers starting together do not race),
and which of its errors are the data's (quarantined) rather than the server's (spooled).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from crawler.config.storage import StorageConfig
from crawler.errors import StoreDataError, StoreError, StoreTimeout, StoreUnavailable
from crawler.lifecycle import Part
from crawler.record import Record, RunRow, Written, dumps
from crawler.storage import counts, history

if TYPE_CHECKING:  # psycopg is imported when first used: its import costs RSS on the Pi
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

    Connection = AsyncConnection[TupleRow]


log = logging.getLogger("crawler.store")

# A fixed, arbitrary advisory-lock id: "crawler migrations".
_MIGRATION_LOCK = 7_302_150_411

PG_MIGRATIONS: tuple[str, ...] = (
    # 1: records and runs
    """
    CREATE TABLE scraped_data (
        source      text        NOT NULL,
        key         text        NOT NULL,
        data        jsonb       NOT NULL,
        first_seen  timestamptz NOT NULL DEFAULT now(),
        last_seen   timestamptz NOT NULL DEFAULT now(),
        processed   boolean     NOT NULL DEFAULT false,
        PRIMARY KEY (source, key)
    );
    CREATE INDEX scraped_data_unprocessed ON scraped_data (source) WHERE NOT processed;
    CREATE INDEX scraped_data_last_seen ON scraped_data (source, last_seen);
    CREATE TABLE crawler_jobs (
        id          bigserial   PRIMARY KEY,
        run_id      uuid        UNIQUE,
        source      text        NOT NULL,
        instance    text        NOT NULL,
        status      text        NOT NULL CHECK (status IN ('running', 'success', 'failure')),
        started_at  timestamptz NOT NULL,
        finished_at timestamptz,
        pages       integer     NOT NULL DEFAULT 0,
        records     integer     NOT NULL DEFAULT 0,
        error       text
    );
    CREATE INDEX crawler_jobs_source_started ON crawler_jobs (source, started_at DESC);
    """,
    # 2: leases, so several crawlers share sources without running one twice
    """
    CREATE TABLE crawler_leases (
        source     text        PRIMARY KEY,
        holder     text        NOT NULL,
        expires_at timestamptz NOT NULL
    );
    """,
    # 3: crawler heartbeats for a fair share of leases; failed-jobs queries by finish time
    """
    CREATE TABLE crawler_instances (
        holder     text        PRIMARY KEY,
        seen_at    timestamptz NOT NULL
    );
    CREATE INDEX crawler_jobs_finished ON crawler_jobs (finished_at);
    """,
    # 4: every changed version of the records of `history: true` sources
    history.PG_MIGRATION,
    # 5: the Data dashboard's "new records" panels filter on first_seen (which never changes
    # after the insert, so this index does not cost the upserts their HOT updates); retention
    # deletes history by age
    """
    CREATE INDEX scraped_data_first_seen ON scraped_data (source, first_seen);
    CREATE INDEX scraped_data_history_seen ON scraped_data_history (seen_at);
    """,
    # 6: per-source counts for the pipeline exporter, kept by triggers (existing rows counted)
    counts.PG_MIGRATION,
    # 7: a run's records new and changed (issue 27); NULL in the rows from before
    """
    ALTER TABLE crawler_jobs ADD COLUMN records_new integer, ADD COLUMN records_changed integer;
    """,
)

# SQLSTATE classes that mean "this data", not "this connection" or "this server now": 22 data
# exception (bad JSON, NUL, out of range), 23 integrity constraint (CHECK, NOT NULL), 54 program
# limit (a value too big for an index), P0 PL/pgSQL (a trigger that raises). Everything else
# (08 connection, 40 rollback, 53 resources, 57 operator, 58 system, XX internal, ...) is the
# database's state, which a later retry may find fixed.
PG_DATA_CLASSES = frozenset({"22", "23", "54", "P0"})


# fn(conn, *args), run by PostgresStore.run() inside one transaction.
Transaction = Callable[..., Awaitable[None]]

_PG_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS crawler_stage (ord integer, source text, key text, data jsonb)"
    " ON COMMIT DELETE ROWS"
)
# DISTINCT ON: one batch may hold the same key twice, which ON CONFLICT cannot update twice;
# the last one in the batch (the newest, e.g. when draining the spool) wins. `o` reads the stored
# rows as they were before the upsert (every part of one statement sees the same snapshot), so
# the one answer row counts the new and the changed keys with no round trip of its own; the
# upsert runs whether or not the final SELECT reads it, as every data-modifying WITH does.
_PG_UPSERT = """
WITH s AS (
    SELECT DISTINCT ON (source, key) source, key, data FROM crawler_stage
     ORDER BY source, key, ord DESC
), o AS (
    SELECT t.key IS NULL AS fresh, t.data IS DISTINCT FROM s.data AS differs
      FROM s LEFT JOIN scraped_data AS t ON t.source = s.source AND t.key = s.key
), u AS (
    INSERT INTO scraped_data AS t (source, key, data)
    SELECT source, key, data FROM s
    ON CONFLICT (source, key) DO UPDATE
       SET last_seen = now(),
           processed = t.processed AND t.data = EXCLUDED.data,
           data = EXCLUDED.data
)
SELECT count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE differs AND NOT fresh) FROM o
"""


class PostgresStore(Part):
    """The production store. Loses its connection gracefully: StoreUnavailable, then reconnect.

    One connection, one transaction at a time. `session()` gives another connection to the
    same database for work that must not wait behind record batches (the leases).
    """

    backend = "postgres"
    remote = True

    def __init__(
        self,
        config: StorageConfig,
        history: frozenset[str] = frozenset(),
        *,
        name: str = "crawler",
        timeout: float | None = None,
    ) -> None:
        self.config = config
        self.history = history  # sources whose changed records are kept as versions
        self.name = name  # its application_name: which connection is which in pg_stat_activity
        # A session's limit on each transaction, enforced by the server too (statement and lock
        # timeouts); records have `write_timeout`, on this side only.
        self.timeout = timeout
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()

    def session(self, name: str, timeout: float) -> PostgresStore:
        """A connection of its own to the same database, each transaction bounded by `timeout`
        on both sides (StoreTimeout past it)."""
        return PostgresStore(self.config, name=name, timeout=timeout)

    async def open(self) -> None:
        """Connect and migrate; StoreUnavailable if the database cannot be reached now."""
        async with self._lock:
            await self._connect()

    async def _connect(self) -> Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        import psycopg
        from psycopg.conninfo import make_conninfo

        # storage.sslmode/sslrootcert, when set, win over the same parameters in the DSN.
        params: dict[str, str] = {}
        if self.config.sslmode is not None:
            params["sslmode"] = self.config.sslmode
        if self.config.sslrootcert is not None:
            params["sslrootcert"] = str(self.config.sslrootcert)
        connect_timeout = self.config.connect_timeout
        if self.timeout is not None:
            ms = max(1, int(self.timeout * 1000))
            params["options"] = f"-c statement_timeout={ms} -c lock_timeout={ms}"
            connect_timeout = min(connect_timeout, self.timeout)
        try:
            conn = await psycopg.AsyncConnection.connect(
                make_conninfo(self.config.dsn or "", **params),
                password=self.config.password,
                connect_timeout=max(1, int(connect_timeout)),
                autocommit=False,
                application_name=self.name,
                # Notice a dead peer in about a minute rather than TCP's quarter of an hour.
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
            )
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {_first_line(exc)}") from exc
        try:
            # A record counts as stored when its commit returns, so that commit must be durable
            # whatever the server's default (with `off`, a crash right after it can lose it).
            await conn.execute("SET synchronous_commit TO on")
            if self.timeout is None:  # the records' connection migrates; a session uses the schema
                await self._migrate(conn)
                await conn.execute(_PG_STAGE)
            await conn.commit()
        except psycopg.OperationalError as exc:
            await conn.close()
            raise StoreUnavailable(f"PostgreSQL went away: {_first_line(exc)}") from exc
        except psycopg.Error as exc:
            await conn.close()
            raise StoreError(f"migrating PostgreSQL failed: {_first_line(exc)}") from exc
        self._conn = conn
        return conn

    @staticmethod
    async def _migrate(conn: Connection) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS crawler_schema_migrations"
                " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute(
                "SELECT coalesce(max(version), 0) FROM crawler_schema_migrations"
            )
            row = await cur.fetchone()
            current = int(row[0]) if row else 0
            for number, sql in enumerate(PG_MIGRATIONS, start=1):
                if number > current:
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO crawler_schema_migrations (version) VALUES (%s)", (number,)
                    )
                    log.info("applied migration", extra={"version": number})

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None

    async def run(self, fn: Transaction, *args: Any) -> None:
        """Run `fn(conn, *args)` in one transaction; translate psycopg errors at this edge.

        Bounded by `write_timeout` (a session's own `timeout`): a NAS that vanished from the
        Wi-Fi leaves a socket that TCP would retry for many minutes, while the spool could have
        taken the batch at once.
        """
        import psycopg

        limit = self.timeout if self.timeout is not None else self.config.write_timeout
        async with self._lock:
            conn = await self._connect()
            try:
                await asyncio.wait_for(self._transaction(conn, fn, *args), timeout=limit)
            except asyncio.TimeoutError as exc:
                await self._drop()
                raise StoreTimeout(f"PostgreSQL did not answer within {limit:g}s") from exc
            except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable) as exc:
                # The server's statement or lock timeout (operational errors, but the server
                # answered): it is there, too slow.
                raise StoreTimeout(f"PostgreSQL: {_first_line(exc)}") from exc
            except psycopg.OperationalError as exc:
                await self._drop()
                raise StoreUnavailable(f"PostgreSQL went away: {_first_line(exc)}") from exc
            except psycopg.Error as exc:
                if conn.closed or conn.broken:
                    await self._drop()
                    raise StoreUnavailable(f"PostgreSQL went away: {_first_line(exc)}") from exc
                if _is_data_error(exc):
                    raise StoreDataError(
                        f"PostgreSQL refused the batch: {_first_line(exc)}"
                    ) from exc
                raise StoreError(f"PostgreSQL rejected the batch: {_first_line(exc)}") from exc
            except UnicodeError as exc:  # text psycopg cannot encode (a lone surrogate)
                raise StoreDataError(f"PostgreSQL refused the batch: {exc}") from exc
            except OSError as exc:
                await self._drop()
                raise StoreUnavailable(f"PostgreSQL went away: {exc}") from exc

    @staticmethod
    async def _transaction(conn: Connection, fn: Transaction, *args: Any) -> None:
        async with conn.transaction():
            await fn(conn, *args)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # already broken; closing is best effort
                log.debug("closing a broken connection failed", exc_info=True)

    async def _write_records(
        self, conn: Connection, records: Sequence[Record], written: list[Written]
    ) -> None:
        async with conn.cursor() as cur:
            async with cur.copy("COPY crawler_stage (ord, source, key, data) FROM STDIN") as copy:
                for i, r in enumerate(records):
                    await copy.write_row((i, r.source, r.key, dumps(r.data)))
            versioned = history.wanted(self.history, {r.source for r in records})
            if versioned:
                await cur.execute(history.PG_INSERT, (versioned,))
            await cur.execute(_PG_UPSERT)
            row = await cur.fetchone()
            written.append(Written(int(row[0]), int(row[1])) if row else Written())

    async def write(self, records: Sequence[Record]) -> Written:
        """Upsert `records` in one transaction; how many keys were new and how many changed."""
        if not records:
            return Written()
        written: list[Written] = []  # filled inside the transaction, read once it committed
        await self.run(self._write_records, records, written)
        return written[-1]

    @staticmethod
    async def _write_run(conn: Connection, run: RunRow) -> None:
        await conn.execute(
            "INSERT INTO crawler_jobs (run_id, source, instance, status, started_at, finished_at,"
            " pages, records, records_new, records_changed, error) VALUES (%s, %s, %s, %s,"
            " to_timestamp(%s), to_timestamp(%s), %s, %s, %s, %s, %s)"
            " ON CONFLICT (run_id) DO NOTHING",
            (
                run.run_id,
                run.source,
                run.instance,
                run.status,
                run.started_at,
                run.finished_at,
                run.pages,
                run.records,
                run.records_new,
                run.records_changed,
                run.error,
            ),
        )

    async def write_run(self, run: RunRow) -> None:
        await self.run(self._write_run, run)

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers now."""

        async def _select(conn: Connection) -> None:
            await conn.execute("SELECT 1")

        await self.run(_select)


def _is_data_error(exc: Exception) -> bool:
    """The server refused the data (by SQLSTATE class), or psycopg did before sending it (a
    DataError without SQLSTATE, e.g. NUL in a text value)."""
    import psycopg

    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return sqlstate[:2] in PG_DATA_CLASSES
    return isinstance(exc, (psycopg.DataError, psycopg.IntegrityError))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
