from __future__ import annotations

import time

import psycopg

from tests.proxy import Proxy


def test_pg_dsn_gives_an_empty_working_database(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)


def test_proxy_slows_only_the_connections_named(pg_dsn: str, pg_proxy: Proxy) -> None:
    """`slow(name, s)` holds each message of connections with that application_name, at once
    for those already open; the others pass; `slow(name, 0)` ends it."""
    dsn = pg_proxy.dsn(pg_dsn)
    with (
        psycopg.connect(dsn, application_name="records", autocommit=True) as slow,
        psycopg.connect(dsn, application_name="leases", autocommit=True) as fast,
    ):

        def took(conn: psycopg.Connection) -> float:
            start = time.monotonic()
            assert conn.execute("select 1").fetchone() == (1,)
            return time.monotonic() - start

        pg_proxy.slow("records", 1.0)
        assert took(slow) >= 1.0
        assert took(fast) < 1.0
        pg_proxy.slow("records", 0)
        assert took(slow) < 1.0
