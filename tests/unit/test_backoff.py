"""Backoff: decorrelated jitter between base and 3x the last delay, capped, with a deadline."""

from __future__ import annotations

import random

from crawler.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_delays_grow_within_bounds_and_stay_under_the_cap() -> None:
    b = Backoff(base=1.0, cap=10.0, rng=random.Random(7))
    previous = 0.0
    delays = [b.next_delay() for _ in range(50)]
    for d in delays:
        assert 1.0 <= d <= min(10.0, max(1.0, previous * 3))
        previous = d
    assert max(delays) > 5.0  # it does grow towards the cap
    assert b.attempt == 50


def test_same_seed_same_delays_different_seed_different_delays() -> None:
    def run(seed: int) -> list[float]:
        b = Backoff(base=0.5, cap=30.0, rng=random.Random(seed))
        return [b.next_delay() for _ in range(5)]

    assert run(1) == run(1)
    assert run(1) != run(2)  # clients that failed together do not retry together


def test_deadline_counts_from_start_and_reset() -> None:
    clock = Clock()
    b = Backoff(base=1.0, cap=5.0, give_up_after=10.0, clock=clock)
    assert not b.expired()
    clock.now += 8.0
    assert not b.expired(2.0)  # exactly at the bound still waits
    assert b.expired(2.5)
    b.next_delay()
    b.reset()
    assert b.attempt == 0 and not b.expired(9.0)
    clock.now += 10.5
    assert b.expired()


def test_without_a_deadline_it_never_expires() -> None:
    clock = Clock()
    b = Backoff(base=1.0, cap=5.0, clock=clock)
    clock.now += 1e9
    assert not b.expired(1e9)


def test_reset_starts_the_delays_over() -> None:
    b = Backoff(base=1.0, cap=100.0, rng=random.Random(3))
    for _ in range(10):
        b.next_delay()
    b.reset()
    assert 1.0 <= b.next_delay() <= 1.0  # the first delay after a reset is the base
