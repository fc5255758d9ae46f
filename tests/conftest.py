"""Shared fixtures and the test tiers.

Tiers, by folder (each test gets the folder's marker, so `-m unit` works too):
- tests/unit/: no servers, in-process fakes, seconds;
- tests/integration/: a real PostgreSQL, the aiohttp test sites, crawler processes;
- tests/ops/: the monitoring stack, compose, deploy and dashboards, checked by their own tools;
- tests/system/: deploy/install on a booted Debian with systemd as PID 1 (root, minutes).
`scripts/test unit` (or integration, ops, system) runs one tier; `scripts/test` runs them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import helpers
from tests.chromium import Chromium
from tests.helpers import PostgresServer
from tests.proxy import Proxy
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
def pg_proxy(pg_dsn: str) -> Iterator[Proxy]:
    """A TCP proxy in front of the session's PostgreSQL (tests/proxy.py): `cut()` breaks the
    link while the server stays up; `pg_proxy.dsn(pg_dsn)` is the database through it."""
    port = int(pg_dsn.rsplit(":", 1)[1].split("/")[0])
    with Proxy(port) as proxy:
        yield proxy


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """`write_config(name="crawler.yaml", **overrides)`: a configuration file in tmp_path,
    the tests' defaults deep-merged with `overrides` (tests/helpers.py `write_config`)."""

    def write(name: str = "crawler.yaml", **overrides: Any) -> Path:
        return helpers.write_config(tmp_path, name, **overrides)

    return write


@pytest.fixture
def site() -> Iterator[Site]:
    """A real aiohttp site on 127.0.0.1 (see tests/site.py)."""
    s = Site().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    """One real headless Chromium for the module, its DevTools port on 127.0.0.1
    (tests/chromium.py)."""
    browser = Chromium().start()
    yield browser
    browser.stop()


TIERS = ("unit", "integration", "ops", "system")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.parts
        tier = next((t for t in TIERS if t in parts[-3:-1]), None)
        if tier is None:
            raise pytest.UsageError(
                f"{item.path}: every test lives in tests/unit, tests/integration, tests/ops or tests/system"
            )
        item.add_marker(getattr(pytest.mark, tier))
