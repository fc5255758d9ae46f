"""The /metrics body (crawler/observability/exposition.py) is what prometheus_client's `generate_latest` renders:
byte for byte on registries whose values hold still, family for family (parsed by
prometheus_client's own parser) on the crawler's registry. These fail if prometheus_client's
internals change under the fast path; the fallback to `generate_latest` is tested too."""

from __future__ import annotations

import math
import random
import time
from typing import Any

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from crawler.observability.exposition import Exposition, format_value
from crawler.observability.metrics import Metrics

HOSTILE = ["back\\slash", 'quote"d', "new\nline", "cr\rline", "sep\u2028x", "ünï", "", "{a=b}"]
ODD_VALUES = [
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    0.0,
    1e-7,
    0.1,
    999_999.9999,
    1e6,
    1_234_567.0,
    1.763e9,
    1e16,
    1e22,
    -1e20,
    -3.5,
]


def parsed(text: bytes) -> list[tuple[object, ...]]:
    """Families as prometheus_client's parser reads them, values as text (NaN equals NaN)."""
    return [
        (
            f.name,
            f.type,
            f.documentation,
            [(s.name, sorted(s.labels.items()), floatToGoString(s.value)) for s in f.samples],
        )
        for f in text_string_to_metric_families(text.decode())
    ]


def assert_same(exposition: Exposition) -> None:
    fast = exposition.render()
    assert exposition.fast
    expected = generate_latest(exposition.registry)
    assert fast.decode() == expected.decode()
    assert parsed(fast) == parsed(expected)


class Custom(Collector):
    """A collector the fast path does not know: it must go through generate_latest."""

    def collect(self) -> list[Metric]:
        c = CounterMetricFamily("custom_events", "Custom \\ help\nwith a newline.", labels=["k"])
        c.add_metric(['v"1'], 3.0)
        g = GaugeMetricFamily("custom_level", "A level.")
        g.add_metric([], math.nan)
        return [c, g]


class MyCounter(Counter):
    """A subclass may override what it samples: not the fast path's to guess."""


def odd_registry() -> tuple[CollectorRegistry, dict[str, Any]]:
    r = CollectorRegistry()
    m: dict[str, Any] = {}
    plain = m["plain"] = Counter("plain", "No labels.", registry=r)
    plain.inc(7)
    c = m["c"] = Counter(
        "labelled_total", "Help with \\ and\nnewline.", ["zeta", "alpha"], registry=r
    )
    for i, v in enumerate(HOSTILE):
        c.labels(v, HOSTILE[-1 - i]).inc(i + 0.5)
    Counter("unused", "Labelled, no child yet: header only.", ["a"], registry=r)
    Counter("sized", "With a unit.", ["a"], unit="bytes", registry=r).labels("x").inc(2**40)
    g = m["g"] = Gauge("odd_gauge", "Odd values.", ["v"], registry=r)
    for v in ODD_VALUES:
        g.labels(repr(v)).set(v)
    Gauge("plain_gauge", "No labels.", registry=r).set(-2.5)
    fn = Gauge("fn_gauge", "From a callback.", ["k"], registry=r)
    fn.labels("a").set_function(lambda: 42.0)
    fn.labels("b").set(1)
    Gauge("fn_plain", "From a callback.", registry=r).set_function(lambda: math.inf)
    h = m["h"] = Histogram("lat_seconds", "Latency.", ["source", "zz"], registry=r)
    for i, v in enumerate([0.003, 0.2, 3.0, 99.0, math.inf]):
        h.labels(HOSTILE[i], "z").observe(v)
    hp = Histogram("plain_seconds", "No labels.", buckets=(1.0, 60.0), registry=r)
    hp.observe(0.5)
    hp.observe(1e7)
    Histogram("neg", "Negative buckets: no _sum.", buckets=(-1.0, 0.0, 1.0), registry=r).observe(-3)
    Summary("summ", "A summary.", ["k"], registry=r).labels("a").observe(2)
    Info("build", "Build.", registry=r).info({"version": "1.2", "x": 'q"'})
    Enum("state", "State.", states=["a", "b"], registry=r).state("b")
    MyCounter("mine", "A subclass.", ["a"], registry=r).labels("x").inc()
    r.register(Custom())
    return r, m


def test_renders_byte_for_byte_what_generate_latest_renders() -> None:
    disable_created_metrics()
    r, m = odd_registry()
    exposition = Exposition(r)
    assert_same(exposition)
    # Exactly the crawler's own classes took the fast path (not the subclass, Summary, ...).
    assert {(type(c), c._name) for c in exposition._families} == {
        (Counter, "plain"),
        (Counter, "labelled"),
        (Counter, "unused"),
        (Counter, "sized_bytes"),
        (Gauge, "odd_gauge"),
        (Gauge, "plain_gauge"),
        (Gauge, "fn_gauge"),
        (Gauge, "fn_plain"),
        (Histogram, "lat_seconds"),
        (Histogram, "plain_seconds"),
        (Histogram, "neg"),
    }
    # Second scrape: from the cached prefixes, with changed values and new children.
    m["plain"].inc(0.25)
    m["g"].labels("new\\one").set(1e300)
    m["h"].labels("new", "z").observe(0.7)
    m["c"].labels(*HOSTILE[:2]).inc(1e9)
    assert_same(exposition)
    # Children removed and re-created with the same labels; a collector unregistered.
    m["c"].remove(*HOSTILE[:2])
    m["g"].clear()
    m["g"].labels("again").set(3)
    m["c"].labels(*HOSTILE[:2]).inc(5)
    r.unregister(m["h"])
    assert_same(exposition)
    # What was removed is forgotten (a crawler runs for months).
    assert m["h"] not in exposition._families
    assert list(exposition._families[m["g"]].children) == [("again",)]
    assert b'lat_seconds_bucket{le="0.005",source="back\\\\slash",zz="z"} 1.0\n' not in (
        exposition.render()
    )
    assert b'labelled_total{alpha="quote\\"d",zeta="back\\\\slash"} 5.0\n' in exposition.render()


def test_the_crawler_registry_parses_to_the_same_families() -> None:
    """All of crawler.metrics with per-source series, the pull gauges (one failing, one absent)
    and the process, platform and GC collectors, whose readings move between two calls: those
    are compared by name, type and labels."""
    metrics = Metrics()
    for i in range(3):
        s = f"s{i}"
        metrics.init_source(s, frozenset({"example.org", "b.example"}), "postgres")
        metrics.init_fields(s, ["title", "price"], required=True)
        metrics.init_discovery(s, ["listing", "detail"], ["max_pages"], links=True)
        metrics.request_duration.labels(s).observe(0.3)
        metrics.requests.labels(s, "example.org", "2xx").inc()
        metrics.last_run.labels(s).set(time.time())
        metrics.source_run_duration.labels(s).observe(75)
    metrics.store_duration.labels("postgres").observe(0.02)

    def broken() -> float:
        raise OSError("no spool")

    metrics.watch_spool(lambda: True, lambda: 12, broken, lambda: 0.0)
    metrics.pull.add("crawler_absent", "None: not exported.", lambda: None)
    exposition = Exposition(metrics.registry)
    for _ in range(2):
        fast, expected = exposition.render(), generate_latest(metrics.registry)
        assert exposition.fast

        def steady(families: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
            moving = ("process_", "python_gc_")
            return [
                f if not str(f[0]).startswith(moving) else (*f[:3], [s[:2] for s in f[3]])
                for f in families
            ]

        assert steady(parsed(fast)) == steady(parsed(expected))
        assert b"crawler_spool_records 12.0\n" in fast
        assert b"crawler_spool_bytes" not in fast and b"crawler_absent" not in fast
        assert b'crawler_source_runs_total{outcome="failure",source="s2"} 0.0\n' in fast


def test_created_series_when_enabled_come_from_generate_latest() -> None:
    enable_created_metrics()
    try:
        r, _ = odd_registry()
        exposition = Exposition(r)
        assert_same(exposition)
        assert b"# TYPE labelled_created gauge\n" in exposition.render()
    finally:
        disable_created_metrics()


def test_target_info_is_rendered_as_generate_latest_does() -> None:
    r = CollectorRegistry(target_info={"service": "crawler"})
    Counter("c", "C.", ["a"], registry=r).labels("x").inc()
    exposition = Exposition(r)
    assert_same(exposition)
    assert exposition.render().startswith(b"# HELP target_info")


def test_falls_back_to_generate_latest_when_the_internals_change(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As a later prometheus_client might: a counter keeps its value under another name, and
    its own sampling follows; the fast path cannot read it and must not serve a wrong body."""
    r = CollectorRegistry()
    c = Counter("moved", "Moved value.", ["a"], registry=r)
    child = c.labels("x")
    child.inc(4)
    exposition = Exposition(r)
    assert (
        exposition.render()
        == b'# HELP moved_total Moved value.\n# TYPE moved_total counter\nmoved_total{a="x"} 4.0\n'
    )
    child._amount = child.__dict__.pop("_value")
    monkeypatch.setattr(
        Counter,
        "_child_samples",
        lambda self: (Sample("_total", {}, self._amount.get(), None, None),),
    )
    child.__dict__["_amount"].inc(1)
    body = exposition.render()
    assert body == generate_latest(r)
    assert body.endswith(b'moved_total{a="x"} 5.0\n')
    assert not exposition.fast
    assert "prometheus_client internals not as expected" in caplog.text
    child.__dict__["_amount"].inc(2)  # later scrapes stay on generate_latest
    assert exposition.render() == generate_latest(r)
    assert exposition.render().endswith(b'moved_total{a="x"} 7.0\n')


def test_values_are_formatted_as_prometheus_client_formats_them() -> None:
    rng = random.Random(13)
    values = ODD_VALUES + [rng.uniform(-1e7, 1e7) for _ in range(2000)]
    values += [rng.expovariate(1e-3) * 10 ** rng.randint(-12, 20) for _ in range(2000)]
    values += [float(n) for n in range(-5, 2_000_001, 999)]
    for v in values:
        assert format_value(v) == floatToGoString(v), v
    assert format_value(3) == floatToGoString(3) == "3.0"  # an int, should one get through
