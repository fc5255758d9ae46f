"""The same storage contract for PostgreSQL (real server) and the embedded SQLite store."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from crawler.config.storage import StorageConfig
from crawler.errors import StoreUnavailable
from crawler.record import Record, RunRow, Written
from crawler.storage.embedded import SqliteStore
from crawler.storage.postgres import PostgresStore
from crawler.storage.store import Store


class Backend:
    """Opens the store under test and reads its tables back, whatever the backend."""

    def __init__(self, kind: str, tmp_path: Path, dsn: str | None) -> None:
        self.kind, self.tmp_path, self.dsn = kind, tmp_path, dsn

    def make(self) -> Store:
        if self.kind == "postgres":
            return PostgresStore(StorageConfig(dsn=self.dsn))
        return SqliteStore(self.tmp_path / "crawler.sqlite")

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.kind == "postgres":
            with psycopg.connect(self.dsn or "") as conn:
                return list(conn.execute(sql).fetchall())
        conn = sqlite3.connect(self.tmp_path / "crawler.sqlite")
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()


@pytest.fixture(params=["postgres", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    return Backend(request.param, tmp_path, dsn)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    s = backend.make()
    await s.open()
    yield s
    await s.close()


def recs(n: int, version: str = "a", source: str = "src") -> list[Record]:
    return [Record(source=source, key=f"k{i}", data={"i": i, "v": version}) for i in range(n)]


def run_row(run_id: str | None = None, status: str = "success") -> RunRow:
    now = time.time()
    return RunRow(
        run_id=run_id or str(uuid.uuid4()),
        source="src",
        instance="t",
        status=status,
        started_at=now - 2,
        finished_at=now,
        pages=3,
        records=60,
        error=None,
    )


async def test_same_records_twice_are_stored_once_and_only_move_last_seen(store, backend):
    await store.write(recs(50))
    first = dict(
        (k, (f, last))
        for k, f, last in backend.rows("select key, first_seen, last_seen from scraped_data")
    )
    await asyncio.sleep(0.01)
    await store.write(recs(50))
    rows = backend.rows("select key, first_seen, last_seen from scraped_data")
    assert len(rows) == 50
    for key, first_seen, last_seen in rows:
        assert first_seen == first[key][0]
        assert str(last_seen) > str(first[key][1])


async def test_changed_record_replaces_data_and_clears_processed(store, backend):
    await store.write(recs(3))
    if backend.kind == "postgres":
        with psycopg.connect(backend.dsn or "", autocommit=True) as conn:
            conn.execute("update scraped_data set processed = true")
    else:
        c = sqlite3.connect(backend.tmp_path / "crawler.sqlite")
        c.execute("update scraped_data set processed = 1")
        c.commit()
        c.close()
    await store.write(recs(2, version="b") + recs(3)[2:])
    rows = {
        k: (json.loads(d) if isinstance(d, str) else d, bool(p))
        for k, d, p in backend.rows("select key, data, processed from scraped_data")
    }
    assert rows["k0"] == ({"i": 0, "v": "b"}, False)
    assert rows["k1"] == ({"i": 1, "v": "b"}, False)
    assert rows["k2"] == ({"i": 2, "v": "a"}, True)  # unchanged: downstream need not redo it


async def test_a_write_counts_new_and_changed_keys_but_not_unchanged_ones(store, backend):
    assert await store.write(recs(5)) == Written(new=5, changed=0)
    # The second run: one value changed, the rest re-crawled unchanged, one key never seen.
    second = recs(5)
    second[3] = Record(source="src", key="k3", data={"i": 3, "v": "b"})
    assert await store.write(second) == Written(new=0, changed=1)
    assert await store.write(recs(6)) == Written(new=1, changed=1)  # k3 back to "a"; k5 new
    assert await store.write(recs(6)) == Written(new=0, changed=0)


async def test_a_key_repeated_in_a_batch_counts_once_by_its_last_version(store, backend):
    assert await store.write(recs(2) + recs(2, version="b")) == Written(new=2, changed=0)
    assert await store.write(recs(2, version="c") + recs(2, version="b")) == Written()
    assert await store.write(recs(1, version="b") + recs(1, version="c")) == Written(0, 1)


async def test_an_empty_batch_writes_nothing(store, backend):
    assert await store.write([]) == Written()


async def test_one_batch_may_repeat_a_key(store, backend):
    await store.write(recs(2) + recs(2, version="b"))
    assert len(backend.rows("select key from scraped_data")) == 2


async def test_sources_do_not_collide(store, backend):
    await store.write(recs(5, source="a") + recs(5, source="b"))
    assert backend.rows("select count(*) from scraped_data") == [(10,)]


async def test_job_rows_and_replay_are_idempotent(store, backend):
    r = run_row()
    await store.write_run(r)
    await store.write_run(r)  # a replay from the spool
    await store.write_run(run_row(status="failure"))
    rows = backend.rows(
        "select source, instance, status, pages, records from crawler_jobs order by id"
    )
    assert rows == [("src", "t", "success", 3, 60), ("src", "t", "failure", 3, 60)]


async def test_job_rows_keep_new_and_changed_and_null_for_rows_without(store, backend):
    counted = dataclasses.replace(run_row(), records_new=7, records_changed=2)
    await store.write_run(counted)
    uncounted = run_row()  # as from a crawler before these counts
    await store.write_run(uncounted)
    rows = backend.rows("select run_id, records_new, records_changed from crawler_jobs")
    found = {str(run_id): (new, changed) for run_id, new, changed in rows}
    assert found == {counted.run_id: (7, 2), uncounted.run_id: (None, None)}


async def test_migrations_are_applied_once(backend):
    for _ in range(2):
        s = backend.make()
        await s.open()
        await s.write(recs(1))
        await s.close()
    assert backend.rows("select count(*) from scraped_data") == [(1,)]
    if backend.kind == "postgres":
        from crawler.storage.postgres import PG_MIGRATIONS

        assert backend.rows("select version from crawler_schema_migrations order by 1") == [
            (n,) for n in range(1, len(PG_MIGRATIONS) + 1)
        ]


async def test_unreachable_postgres_raises_store_unavailable():
    from tests.helpers import free_port

    s = PostgresStore(
        StorageConfig(dsn=f"postgresql://x@127.0.0.1:{free_port()}/x", connect_timeout=1)
    )
    with pytest.raises(StoreUnavailable, match="cannot connect to PostgreSQL"):
        await s.open()
    with pytest.raises(StoreUnavailable):
        await s.write(recs(1))


async def test_last_version_in_a_batch_wins(store, backend):
    batch = [Record(source="s", key="k", data={"v": v}) for v in ("old", "mid", "new")]
    await store.write(batch)
    [(data,)] = backend.rows("select data from scraped_data")
    assert (json.loads(data) if isinstance(data, str) else data) == {"v": "new"}


async def test_postgres_commits_are_durable_whatever_the_server_default(pg_dsn: str):
    """The test server runs with synchronous_commit=off; the crawler's session turns it on,
    because a record counts as stored as soon as its commit returns."""
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("show synchronous_commit").fetchone() == ("off",)
    s = PostgresStore(StorageConfig(dsn=pg_dsn))
    await s.open()
    try:
        setting: list[tuple[str]] = []

        async def read(conn: Any) -> None:
            cur = await conn.execute("show synchronous_commit")
            setting.append(await cur.fetchone())

        await s.run(read)
        assert setting == [("on",)]
    finally:
        await s.close()
