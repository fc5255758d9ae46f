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
import operator
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import metrics as pc_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

log = logging.getLogger("crawler.exposition")

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


class _Child:
    """One child's line prefixes, the values last read and the text rendered from them."""

    __slots__ = ("child", "prefixes", "text", "values")

    def __init__(self, child: Any, prefixes: list[str]) -> None:
        self.child = child
        self.prefixes = prefixes
        self.values: list[float] = []
        self.text = ""


class _Family:
    """One Counter, Gauge or Histogram: its HELP/TYPE lines and its children, keyed by label
    values (a child replaced after `remove()` or `clear()` gets new prefixes).

    A child's text is rendered again only when a value it reads is another float object than
    last time: a float is immutable and every update makes a new one, and the object held here
    cannot be freed and its address reused, so `is` means "not updated since"."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.histogram = isinstance(metric, Histogram)
        self.header = generate_latest(_Fixed(metric.describe())).decode()
        self.children: dict[tuple[str, ...], _Child] = {}

    def _child(self, labelvalues: tuple[str, ...], child: Any) -> _Child:
        m = self.metric
        labels = dict(zip(m._labelnames, labelvalues))
        name = m._name
        if not self.histogram:
            suffix = "_total" if isinstance(m, Counter) else ""
            return _Child(child, _prefixes([(name + suffix, labels)]))
        samples = [
            (name + "_bucket", {**labels, "le": _go_float(bound)}) for bound in m._upper_bounds
        ]
        samples.append((name + "_count", labels))
        if m._upper_bounds[0] >= 0:  # as Histogram._child_samples: no _sum below zero
            samples.append((name + "_sum", labels))
        return _Child(child, _prefixes(samples))

    def render(self, out: list[str]) -> None:
        m = self.metric
        if m._labelnames:
            with m._lock:
                children = list(m._metrics.items())
        else:
            children = [((), m)]
        cache = self.children
        if len(cache) > len(children):  # children removed: forget them
            cache.clear()
        out.append(self.header)
        for labelvalues, child in children:
            entry = cache.get(labelvalues)
            if entry is None or entry.child is not child:
                entry = cache[labelvalues] = self._child(labelvalues, child)
            # Each float itself, not get(): its lock guards `+=`, and reading one attribute is
            # atomic; get() was a third of the cost of a scrape.
            if self.histogram:
                values = [bucket._value for bucket in child._buckets]
                values.append(child._sum._value)
                if len(values) != len(entry.values) or not all(
                    map(operator.is_, values, entry.values)
                ):
                    entry.values, entry.text = values, self._histogram_text(entry, values)
            else:
                if "_child_samples" in child.__dict__:  # Gauge.set_function: its callback
                    value = child._child_samples()[0].value
                else:
                    value = child._value._value
                if not entry.values or value is not entry.values[0]:
                    entry.values = [value]
                    entry.text = f"{entry.prefixes[0]}{format_value(value)}\n"
            out.append(entry.text)

    @staticmethod
    def _histogram_text(entry: _Child, values: list[float]) -> str:
        """Buckets cumulative, then _count and (unless a bucket is below 0) _sum, as
        Histogram._child_samples samples them."""
        lines = []
        acc = 0.0
        prefixes = entry.prefixes
        for prefix, value in zip(prefixes, values[:-1]):
            acc += value
            lines.append(f"{prefix}{format_value(acc)}\n")
        lines.append(f"{prefixes[len(values) - 1]}{format_value(acc)}\n")
        if len(prefixes) > len(values):
            lines.append(f"{prefixes[-1]}{format_value(values[-1])}\n")
        return "".join(lines)


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
