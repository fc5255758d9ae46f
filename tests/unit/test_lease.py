"""Lease planning without a database: the fair share, each holder's order, what is kept, what
drains, and that a draining source starts no new run. (The SQL side runs against a real
PostgreSQL in tests/integration/test_leases.py and bench/scale.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from crawler.observability.metrics import Metrics
from crawler.run.lease import Leases, fair_share, split_held, spread

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


def test_a_draining_source_starts_no_new_run(tmp_path: Path):
    leases = Leases(
        None, SOURCES[:3], "pi-a", 60.0, Metrics(CollectorRegistry()), tmp_path / "l.json"
    )  # type: ignore[arg-type]
    leases.held = {"s000", "s001"}
    leases.draining = {"s001"}
    assert [leases.holds(s) for s in SOURCES[:3]] == [True, False, False]
