"""Bisecting a refused batch: the happy path is one write, a bad record costs ~2·log2(n)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from crawler.errors import StoreDataError, StoreUnavailable
from crawler.record import Record
from crawler.storage.quarantine import Isolation, isolate


class Store:
    """Refuses any batch holding one of `bad`; goes away after `away_after` writes."""

    def __init__(self, bad: set[str], away_after: int | None = None) -> None:
        self.bad, self.away_after = bad, away_after
        self.writes = 0
        self.stored: list[str] = []

    async def write(self, records: Sequence[Record]) -> None:
        self.writes += 1
        if self.away_after is not None and self.writes > self.away_after:
            raise StoreUnavailable("gone")
        refused = [r.key for r in records if r.key in self.bad]
        if refused:
            raise StoreDataError(f"refused {refused[0]}")
        self.stored += [r.key for r in records]


def recs(n: int) -> list[Record]:
    return [Record(source="s", key=f"k{i}", data={"i": i}) for i in range(n)]


@pytest.mark.parametrize(("n", "bad"), [(100, {"k37"}), (100, {"k0", "k99"}), (7, {"k3"})])
async def test_isolate_stores_the_rest_and_refuses_each_bad_record_alone(
    n: int, bad: set[str]
) -> None:
    store, found = Store(bad), Isolation()
    await isolate(store.write, recs(n), StoreDataError("whole batch"), found)
    assert sorted(store.stored) == sorted(f"k{i}" for i in range(n) if f"k{i}" not in bad)
    assert [r.key for r in found.stored] == [f"k{i}" for i in range(n) if f"k{i}" not in bad]
    assert {r.key for r, _ in found.refused} == bad
    assert all(why == f"refused {r.key}" for r, why in found.refused)
    # One bad record in 100: 2 writes per level of a 7-level bisection at most.
    if len(bad) == 1 and n == 100:
        assert store.writes <= 14


async def test_an_outage_half_way_keeps_what_was_found() -> None:
    store, found = Store({"k1"}, away_after=3), Isolation()
    records = recs(8)
    with pytest.raises(StoreUnavailable):
        await isolate(store.write, records, StoreDataError("whole batch"), found)
    done = {r.key for r in found.stored} | {r.key for r, _ in found.refused}
    assert done and {r.key for r in found.untouched(records)} == {f"k{i}" for i in range(8)} - done
