"""The /metrics body: prometheus_client's text format, rendered at a fraction of its cost.

`generate_latest` builds a Sample (a namedtuple and a label dict) for every series and then
escapes, sorts and formats every label on every scrape: ~10-15 us per series in pure Python,
20 ms a scrape for 20 sources on a fast core, several times that on the Pi. The text of a series
is the same on every scrape but for its value, so `Exposition` renders each series' line prefix
(`name{labels} `) once, when the series first appears, through prometheus_client's own
formatting, and a scrape costs one value read and one float format per series.

Owns: how a registry becomes the /metrics body. Only the crawler's own metric classes (exactly
Counter, Gauge, Histogram) take the fast path, by reading their children and values (private
attributes of prometheus_client, pinned in requirements.lock); every other collector (process,
platform, GC, the pull gauges) and `_created` series, if enabled, go through `generate_latest`.
If those private attributes are not what this module expects, it says so once in the log and
serves `generate_latest` from then on. tests/unit/test_exposition.py proves the output equal to
`generate_latest`'s.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import metrics as pc_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

_FAST_TYPES = (Counter, Gauge, Histogram)
_NEG_INF = -math.inf
_go_float: Callable[[float], str] = floatToGoString  # untyped in prometheus_client


def format_value(value: float) -> str:
    """`floatToGoString(value)`, without its checks in the common case: below 1e6 a float's
    repr is already Go's (Go switches to exponents only for positive values of 1e6 and more)."""
    if value.__class__ is float and _NEG_INF < value < 1e6:
        return repr(value)
    return _go_float(value)


class _Fixed(Collector):
    """Hands `generate_latest` a list of families (it reads any object with `collect()`)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def _prefixes(samples: list[tuple[str, dict[str, str]]]) -> list[str]:
    """Each sample's line up to its value (`name{labels} `), by prometheus_client's formatting:
    the same escaping, label order and name rules as `generate_latest`, by construction."""
    family = Metric("prefix", "", "unknown")
    for name, labels in samples:
        family.add_sample(name, labels, 0.0)
    # Only "\n" separates lines: a label value's newline is escaped, other breaks are not.
    lines = generate_latest(_Fixed([family])).decode().split("\n")[2:-1]  # after HELP, TYPE
    if len(lines) != len(samples) or not all(line.endswith(" 0.0") for line in lines):
        raise TypeError(f"unexpected sample lines: {lines!r}")
    return [line[:-3] for line in lines]


class _Family:
    """One Counter, Gauge or Histogram: its HELP/TYPE lines and each child's line prefixes,
    keyed by label values (a child replaced after `remove()` or `clear()` gets new ones)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.histogram = isinstance(metric, Histogram)
        self.header = generate_latest(_Fixed(metric.describe())).decode()
        self.children: dict[tuple[str, ...], tuple[Any, list[str]]] = {}

    def _child_prefixes(self, labelvalues: tuple[str, ...]) -> list[str]:
        m = self.metric
        labels = dict(zip(m._labelnames, labelvalues))
        name = m._name
        if not self.histogram:
            return _prefixes([(name + ("_total" if isinstance(m, Counter) else ""), labels)])
        samples = [
            (name + "_bucket", {**labels, "le": _go_float(bound)}) for bound in m._upper_bounds
        ]
        samples.append((name + "_count", labels))
        if m._upper_bounds[0] >= 0:  # as Histogram._child_samples: no _sum below zero
            samples.append((name + "_sum", labels))
        return _prefixes(samples)

    def render(self, out: list[str]) -> None:
        m = self.metric
        if m._labelnames:
            with m._lock:
                children = list(m._metrics.items())
        else:
            children = [((), m)]
        cache = self.children
        if len(cache) > len(children):  # children removed: forget their prefixes
            cache.clear()
        out.append(self.header)
        for labelvalues, child in children:
            entry = cache.get(labelvalues)
            if entry is None or entry[0] is not child:
                entry = cache[labelvalues] = (child, self._child_prefixes(labelvalues))
            prefixes = entry[1]
            if self.histogram:
                acc = 0.0
                for prefix, bucket in zip(prefixes, child._buckets):
                    acc += bucket.get()
                    out.append(f"{prefix}{format_value(acc)}\n")
                out.append(f"{prefixes[len(child._buckets)]}{format_value(acc)}\n")
                if len(prefixes) > len(child._buckets) + 1:
                    out.append(f"{prefixes[-1]}{format_value(child._sum.get())}\n")
            elif "_child_samples" in child.__dict__:  # Gauge.set_function: its callback
                out.append(f"{prefixes[0]}{format_value(child._child_samples()[0].value)}\n")
            else:
                out.append(f"{prefixes[0]}{format_value(child._value.get())}\n")


class Exposition:
    """Renders `registry` as `generate_latest(registry)` would, from cached line prefixes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.fast = True
        self._families: dict[Collector, _Family] = {}

    def render(self) -> bytes:
        if self.fast:
            try:
                return self._render_fast()
            except (AttributeError, TypeError, KeyError, IndexError) as e:
                # prometheus_client's internals changed under us: correct output over cheap.
                self.fast = False
                log.warning(
                    "metrics exposition: prometheus_client internals not as expected (%r);"
                    " serving generate_latest from now on",
                    e,
                )
        return generate_latest(self.registry)

    def _render_fast(self) -> bytes:
        r = self.registry
        with r._lock:
            collectors = list(r._collector_to_names)
            target_info = r._target_info
        if target_info:  # the target_info family comes first, from the registry itself
            return generate_latest(r)
        # Created series are OpenMetrics families of their own, put after each family.
        fast_types = () if pc_metrics._use_created else _FAST_TYPES
        families = self._families
        out: list[str] = []
        fast = 0
        for collector in collectors:
            if type(collector) in fast_types:
                fast += 1
                family = families.get(collector)
                if family is None:
                    family = families[collector] = _Family(collector)
                family.render(out)
            else:
                out.append(generate_latest(collector).decode())
        if len(families) > fast:  # some were unregistered: forget them
            kept = set(collectors)
            self._families = {c: f for c, f in families.items() if c in kept}
        return "".join(out).encode()
