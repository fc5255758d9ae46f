"""Lease planning without a database: the fair share, each holder's order, what is kept, what
drains, that a draining source starts no new run, and that leases not renewed within the
margin start none either. (The SQL side runs against a real PostgreSQL in
tests/integration/test_leases.py and bench/scale.py.)"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from crawler.config.storage import StorageConfig
from crawler.observability.metrics import Metrics
from crawler.run.lease import Leases, fair_share, split_held, spread
from crawler.storage.postgres import PostgresStore

SOURCES = [f"s{i:03d}" for i in range(200)]


@pytest.mark.parametrize(
    ("sources", "others", "share"),
    [(200, 0, 200), (200, 1, 100), (200, 2, 67), (5, 1, 3), (5, 9, 1), (0, 3, 0)],
)
def test_fair_share_rounds_up_so_every_source_has_a_taker(sources: int, others: int, share: int):
    assert fair_share(sources, others) == share
    assert fair_share(sources, others) * (others + 1) >= sources


def test_each_holder_has_its_own_stable_order():
    a1, a2, b = (
        spread(SOURCES, "pi-a@x"),
        spread(reversed(SOURCES), "pi-a@x"),
        spread(SOURCES, "pi-b@x"),
    )
    assert a1 == a2 and sorted(a1) == SOURCES  # same holder, same order, nothing lost
    assert a1 != b  # another holder prefers other sources
    # Two holders' first halves share about half their sources (as two random halves would),
    # not all of them: when both take free ones at once, they mostly want different ones.
    assert 30 < len(set(a1[:100]) & set(b[:100])) < 70


def test_split_keeps_the_share_and_drains_only_what_is_running():
    held = set(SOURCES[:150])
    order = spread(held, "pi-a@x")
    running = {order[10], order[120], order[130]}
    core, busy = split_held(held, running, 100, "pi-a@x")
    assert core == order[:100]
    assert busy == [order[120], order[130]]  # beyond the share and running: kept for that run
    # Not running and beyond the share: neither kept nor draining, so released.
    assert set(order[100:]) - set(busy) - set(core) == set(order[100:]) - {order[120], order[130]}


def test_under_the_share_everything_held_is_kept():
    core, busy = split_held({"a", "b"}, {"a"}, 5, "h")
    assert sorted(core) == ["a", "b"] and busy == []


def leases_of(tmp_path: Path, registry: CollectorRegistry | None = None) -> Leases:
    """Leases on a store never connected (nothing here reaches a database)."""
    store = PostgresStore(StorageConfig(dsn="postgresql://nobody@127.0.0.1:1/none"))
    metrics = Metrics(registry or CollectorRegistry())
    return Leases(store, SOURCES[:3], "pi-a", 60.0, metrics, tmp_path / "l.json")


def test_leases_have_a_connection_of_their_own_bounded_by_the_margin(tmp_path: Path):
    leases = leases_of(tmp_path)
    assert leases.db.name == "crawler-leases" and leases.db.timeout == leases.margin == 20.0


def test_a_draining_source_starts_no_new_run(tmp_path: Path):
    leases = leases_of(tmp_path)
    leases.trusted_until = time.monotonic() + 60
    leases.held = {"s000", "s001"}
    leases.draining = {"s001"}
    assert [leases.holds(s) for s in SOURCES[:3]] == [True, False, False]


def test_lapsed_leases_start_no_run_and_say_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    registry = CollectorRegistry()
    leases = leases_of(tmp_path, registry)
    leases.held = {"s000", "s001"}
    for s in leases.held:
        leases.metrics.leased.labels(s).set(1)
    leases.trusted_until = time.monotonic() + 60  # renewed 20 s ago
    assert leases.holds("s000")
    leases.trusted_until = time.monotonic() - 0.1  # no renewal within lease_ttl - margin
    with caplog.at_level(logging.WARNING, "crawler.lease"):
        assert not leases.holds("s000") and not leases.holds("s001")
    lapsed = [r for r in caplog.records if r.getMessage().startswith("leases lapsed")]
    assert len(lapsed) == 1 and lapsed[0].held == ["s000", "s001"]  # type: ignore[attr-defined]
    assert registry.get_sample_value("crawler_source_leased", {"source": "s000"}) == 0
    # A database that cannot be reached at all: the sources are kept (crawled into the spool).
    leases.away = True
    assert leases.holds("s000")
