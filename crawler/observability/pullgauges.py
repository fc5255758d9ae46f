"""Gauges computed at scrape time from registered callbacks: the collector behind the metrics
module's `watch_*()` methods (spool depth and age, database and browser reachability, the
quarantine's size). The names and help texts are given by those methods, in metrics.py."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class PullGauges(Collector):
    """Gauges computed at scrape time (spool depth, oldest age, ...) from registered callbacks."""

    def __init__(self) -> None:
        self.callbacks: dict[str, tuple[str, Callable[[], float | None]]] = {}

    def add(self, name: str, help_text: str, fn: Callable[[], float | None]) -> None:
        self.callbacks[name] = (help_text, fn)

    def collect(self):  # type: ignore[no-untyped-def]
        for name, (help_text, fn) in list(self.callbacks.items()):
            try:
                value = fn()
            except Exception:  # a scrape must never fail because one reading did
                value = None
            if value is not None:
                yield GaugeMetricFamily(name, help_text, value=value)

    def describe(self):  # type: ignore[no-untyped-def]
        return []
