"""Shared fixtures: a real PostgreSQL per test session, a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import PostgresServer
from tests.site import Site


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def pg_dsn(pg_server: PostgresServer) -> str:
    """DSN of a fresh, empty database on the session's real PostgreSQL."""
    return pg_server.create_database()


@pytest.fixture
def site() -> Iterator[Site]:
    """A real aiohttp site on 127.0.0.1 (see tests/site.py)."""
    s = Site().start()
    yield s
    s.stop()
