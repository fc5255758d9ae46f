"""Bounded tables and their indexes, on tables of a million rows.

The Data dashboard's SQL, the pipeline exporter's queries and the retention's deletes are
EXPLAINed on a real PostgreSQL whose `scraped_data`, `crawler_jobs` and `scraped_data_history`
hold a million rows each (history a third of that, over the same year), and the test asserts the planned node types
— which index serves each query — never a time. Then retention runs for real against them.
The pipeline exporter reads no table whole: its per-source figures come from the counts the
triggers of migration 6 keep, exact after the million-row insert.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from crawler.config.storage import StorageConfig
from crawler.observability.metrics import Metrics
from crawler.storage.postgres import PostgresStore
from crawler.storage.retention import _PG_DELETE, Retention
from tests.ops.test_dashboards import dashboards, grafana_sql, queries

ROWS = 1_000_000
SOURCES = 200


@pytest.fixture(scope="module")
def big(pg_server: Any) -> Iterator[str]:
    dsn = pg_server.create_database()
    store = PostgresStore(StorageConfig(dsn=dsn))
    asyncio.run(store.open())
    asyncio.run(store.close())
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Unlogged while filling: the planner does not care, and WAL for 3 M rows would
        # dominate the test's time.
        # Secondary indexes are built after the fill, as a bulk load would: faster than
        # maintaining them row by row, and the same indexes in the end.
        tables = ("scraped_data", "crawler_jobs", "scraped_data_history")
        indexes = conn.execute(
            "select indexname, indexdef from pg_indexes where tablename = any(%s)"
            " and indexname not like '%%_pkey' and indexname not like '%%_key'",
            [list(tables)],
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        for table in tables:
            conn.execute(f"ALTER TABLE {table} SET UNLOGGED")
        conn.execute(
            f"""
            INSERT INTO scraped_data (source, key, data, first_seen, last_seen, processed)
            SELECT 's' || (i % {SOURCES}), i::text, jsonb_build_object('price', i % 1000),
                   now() - (i % 365) * interval '1 day', now() - (i % 7) * interval '1 hour',
                   i % 10 <> 0
            FROM generate_series(1, {ROWS}) AS i
            """
        )
        conn.execute(
            f"""
            INSERT INTO crawler_jobs (source, instance, status, started_at, finished_at, pages)
            SELECT 's' || (i % {SOURCES}), 'pi', CASE WHEN i % 50 = 0 THEN 'failure' ELSE 'success' END,
                   now() - i * interval '30 seconds', now() - i * interval '30 seconds' + interval '5 seconds', 10
            FROM generate_series(1, {ROWS}) AS i
            """
        )
        conn.execute(
            f"""
            INSERT INTO scraped_data_history (source, key, data, seen_at)
            SELECT 's' || (i % {SOURCES}), (i % 5000)::text, jsonb_build_object('price', i),
                   now() - i * interval '100 seconds'
            FROM generate_series(1, {ROWS} / 3) AS i
            """
        )
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("ANALYZE")
    yield dsn


def plan(dsn: str, sql: str, *params: Any) -> list[tuple[str, str | None, str | None]]:
    """(node type, relation, index) of every node of the plan."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()
    assert row is not None
    out: list[tuple[str, str | None, str | None]] = []

    def walk(node: dict[str, Any]) -> None:
        out.append((node["Node Type"], node.get("Relation Name"), node.get("Index Name")))
        for child in node.get("Plans", []):
            walk(child)

    doc = row[0] if isinstance(row[0], list) else json.loads(row[0])
    walk(doc[0]["Plan"])
    return out


def scans(nodes: list[tuple[str, str | None, str | None]]) -> set[tuple[str, str | None]]:
    return {(t, idx or rel) for t, rel, idx in nodes if "Scan" in t and (rel or idx)}


def data_dashboard_sql() -> dict[str, str]:
    dash = dashboards()["data.json"]
    now = datetime.now(timezone.utc)
    values = {"source": ["s1"], "field": ["price"], "key": ["17"]}
    out = {}
    for title, sql, _target in queries(dash, "grafana-postgresql-datasource"):
        out[title] = grafana_sql(sql, values, now)
    return out


# Which index serves each Data dashboard panel. Panels that summarise a whole source read all of
# its rows by nature (count, min, max over the source): those use an index on `source` instead of
# reading the table.
def test_data_dashboard_queries_use_indexes(big: str) -> None:
    found = data_dashboard_sql()
    assert found, "no SQL panels found"
    for title, sql in found.items():
        nodes = scans(plan(big, sql))
        seq = {rel for t, rel in nodes if t == "Seq Scan"}
        assert not seq & {"scraped_data", "crawler_jobs", "scraped_data_history"}, (title, nodes)


def test_exporter_and_retention_queries_use_indexes(big: str) -> None:
    from exporters.pipeline import _COUNTS_SQL, _FAILED_JOBS_SQL, _TABLE_BYTES_SQL, TABLES

    assert ("Index Scan", "crawler_jobs_finished") in scans(plan(big, _FAILED_JOBS_SQL)) or (
        "Bitmap Index Scan",
        "crawler_jobs_finished",
    ) in scans(plan(big, _FAILED_JOBS_SQL))
    # The per-source figures: one row per source from the counts table; scraped_data is not
    # read at all (a scrape costs the same at 10 thousand and 10 million rows).
    assert scans(plan(big, _COUNTS_SQL)) == {("Seq Scan", "scraped_data_counts")}
    # Sizes come from the catalogue: no scan of any table.
    assert scans(plan(big, _TABLE_BYTES_SQL, list(TABLES))) == set()
    # Steady state: each hourly pass finds only the oldest sliver past the retention (here
    # ~2 % of the table); that is what the index is for. (On a first clean-up of a table mostly
    # past its retention, a sequential scan with LIMIT finds a batch sooner, and is chosen.)
    sliver = 340 * 86400
    jobs = plan(big, _PG_DELETE.format(table="crawler_jobs", column="finished_at"), sliver, 1000)
    assert ("Index Scan", "crawler_jobs_finished") in scans(jobs), jobs
    history = plan(
        big, _PG_DELETE.format(table="scraped_data_history", column="seen_at"), 340 * 86400, 1000
    )
    assert ("Index Scan", "scraped_data_history_seen") in scans(history), history


def test_exporter_counts_are_exact_after_a_million_row_insert(big: str) -> None:
    with psycopg.connect(big) as conn:
        exact = conn.execute(
            "select source, count(*), count(*) filter (where not processed), max(last_seen)"
            " from scraped_data group by source order by source"
        ).fetchall()
        counted = conn.execute(
            "select source, row_count, unprocessed, newest_seen from scraped_data_counts"
            " order by source"
        ).fetchall()
    assert len(exact) == SOURCES and sum(r[1] for r in exact) == ROWS
    assert counted == exact


def test_retention_deletes_in_batches_what_is_older_and_counts_it(big: str) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    with psycopg.connect(big) as conn:
        old_jobs = conn.execute(
            "select count(*) from crawler_jobs where finished_at < now() - interval '340 days'"
        ).fetchone()[0]  # type: ignore[index]
        jobs_before = conn.execute("select count(*) from crawler_jobs").fetchone()[0]  # type: ignore[index]
        total_history = conn.execute("select count(*) from scraped_data_history").fetchone()[0]  # type: ignore[index]
    store = PostgresStore(StorageConfig(dsn=big))

    async def go() -> dict[str, int]:
        await store.open()
        try:
            cfg = StorageConfig(dsn=big, jobs_retention=340 * 86400, history_retention=0)
            return await Retention(cfg, metrics, store).prune()
        finally:
            await store.close()

    done = asyncio.run(go())
    # Rows cross the boundary while the test runs: what was deleted is what left the table.
    assert old_jobs > 5_000 and done["crawler_jobs"] >= old_jobs and list(done) == ["crawler_jobs"]
    with psycopg.connect(big) as conn:
        jobs_after = conn.execute("select count(*) from crawler_jobs").fetchone()[0]  # type: ignore[index]
        assert jobs_before - jobs_after == done["crawler_jobs"]
        assert conn.execute(
            "select count(*) from crawler_jobs"
            " where finished_at < now() - interval '340 days' - interval '5 minutes'"
        ).fetchone() == (0,)
        assert conn.execute("select count(*) from scraped_data_history").fetchone() == (
            total_history,
        )
    assert (
        registry.get_sample_value("crawler_retention_deleted_rows_total", {"table": "crawler_jobs"})
        == done["crawler_jobs"]
    )
