"""`history: true`: one version per change in scraped_data_history, on both stores, in the same
transaction as the upsert; unchanged re-crawls and sources without history add nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crawler.config.storage import StorageConfig
from crawler.record import Record
from crawler.storage.embedded import SqliteStore
from crawler.storage.postgres import PostgresStore
from crawler.storage.store import Store
from tests.integration.test_store import Backend as StoreBackend


class Backend(StoreBackend):
    """The storage contract's backend, opened with history sources, reading history back."""

    def make(self, history: frozenset[str] = frozenset()) -> Store:  # type: ignore[override]
        if self.kind == "postgres":
            return PostgresStore(StorageConfig(dsn=self.dsn), history)
        return SqliteStore(self.tmp_path / "crawler.sqlite", history)

    def versions(self, source: str, key: str) -> list[Any]:
        rows = self.rows(
            f"SELECT data FROM scraped_data_history WHERE source = '{source}' AND key = '{key}'"
            " ORDER BY id"
        )
        return [json.loads(d) if isinstance(d, str) else d for (d,) in rows]

    def count(self) -> int:
        return int(self.rows("SELECT count(*) FROM scraped_data_history")[0][0])


@pytest.fixture(params=["postgres", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    return Backend(request.param, tmp_path, dsn)


def rec(source: str, key: str, price: float) -> Record:
    return Record(source=source, key=key, data={"sku": key, "price": price})


async def test_one_version_per_change_and_none_for_unchanged(backend: Backend) -> None:
    store = backend.make(frozenset({"shop"}))
    await store.open()
    try:
        await store.write([rec("shop", "a", 1.0), rec("shop", "b", 5.0), rec("plain", "a", 1.0)])
        await store.write([rec("shop", "a", 1.0), rec("shop", "b", 5.0)])  # unchanged re-crawl
        await store.write([rec("shop", "a", 1.5), rec("shop", "b", 5.0)])  # a changed
        await store.write([rec("shop", "a", 1.5)])  # unchanged again
        await store.write([rec("shop", "a", 1.0), rec("plain", "a", 2.0)])  # a back to 1.0
    finally:
        await store.close()
    assert backend.versions("shop", "a") == [
        {"sku": "a", "price": 1.0},
        {"sku": "a", "price": 1.5},
        {"sku": "a", "price": 1.0},
    ]
    assert backend.versions("shop", "b") == [{"sku": "b", "price": 5.0}]
    assert backend.versions("plain", "a") == []  # no history for sources without it
    assert backend.count() == 4


async def test_a_replayed_batch_adds_no_version(backend: Backend) -> None:
    """The spool may hand the store a batch it already committed (a crash before the spool
    row was deleted): the replay must not look like a change."""
    store = backend.make(frozenset({"shop"}))
    await store.open()
    try:
        batch = [rec("shop", str(i), float(i)) for i in range(50)]
        await store.write(batch)
        await store.write(batch)
    finally:
        await store.close()
    assert backend.count() == 50


async def test_history_without_history_sources_is_empty(backend: Backend) -> None:
    store = backend.make(frozenset())
    await store.open()
    try:
        await store.write([rec("shop", "a", 1.0)])
        await store.write([rec("shop", "a", 2.0)])
    finally:
        await store.close()
    assert backend.count() == 0
