"""The metrics module against its reference: every series the crawler can export is in
docs/metrics.md and every row of its table is a metric the crawler defines; the series other
parts create at 0 for the alerts (sessions, rendering) and the scrape-time and reload gauges
behave as the alerts and dashboards expect. A fresh registry in each test."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from crawler.observability.metrics import LOGIN_RESULTS, RENDER_BUCKETS, RENDER_OUTCOMES, Metrics

ROOT = Path(__file__).resolve().parents[2]


def every_feature_on() -> Metrics:
    """Metrics with every optional part switched on, as a crawler with all of them would."""
    m = Metrics(CollectorRegistry())
    m.watch_spool(lambda: True, lambda: 0, lambda: 0, lambda: 0.0)
    m.watch_quarantine(lambda: 0)
    m.watch_browser(lambda: True)
    return m


def exported_names(m: Metrics) -> set[str]:
    names = set()
    for family in m.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        if not name.startswith(("process_", "python_")):
            names.add(name)
    return names


def test_docs_metrics_md_lists_exactly_the_crawlers_metrics() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    # The crawler process's table; the textfile metrics of scripts follow under "Operations".
    crawler_table = text.split("\n## Operations", 1)[0]
    documented = set(re.findall(r"^\| `(crawler_\w+)` \|", crawler_table, re.M))
    exported = exported_names(every_feature_on())
    assert exported - documented == set(), "defined, not in docs/metrics.md"
    assert documented - exported == set(), "in docs/metrics.md, defined nowhere"


def value(m: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return m.registry.get_sample_value(name, labels or {})


def test_login_and_render_series_are_created_at_zero_for_their_sources_only() -> None:
    m = Metrics(CollectorRegistry())
    m.init_login("shop")
    m.init_render("spa")
    for result in LOGIN_RESULTS:
        assert value(m, "crawler_source_logins_total", {"source": "shop", "result": result}) == 0
        assert value(m, "crawler_source_logins_total", {"source": "spa", "result": result}) is None
    for outcome in RENDER_OUTCOMES:
        labels = {"source": "spa", "outcome": outcome}
        assert value(m, "crawler_render_requests_total", labels) == 0
        labels["source"] = "shop"
        assert value(m, "crawler_render_requests_total", labels) is None
    assert set(LOGIN_RESULTS) == {"ok", "failed"}
    assert set(RENDER_OUTCOMES) == {"fetched", "blocked", "refused"}


def test_render_histogram_has_few_buckets() -> None:
    m = Metrics(CollectorRegistry())
    m.render_seconds.labels("spa").observe(2.0)
    buckets = [
        s.labels["le"]
        for f in m.registry.collect()
        if f.name == "crawler_render_seconds"
        for s in f.samples
        if s.name.endswith("_bucket")
    ]
    assert len(buckets) == len(RENDER_BUCKETS) + 1 <= 6  # +Inf
    assert value(m, "crawler_render_seconds_bucket", {"source": "spa", "le": "3.0"}) == 1
    assert value(m, "crawler_render_seconds_bucket", {"source": "spa", "le": "1.0"}) == 0


def test_browser_up_exists_only_when_a_browser_is_watched() -> None:
    m = Metrics(CollectorRegistry())
    assert value(m, "crawler_browser_up") is None, "a crawler without a browser never looks down"
    reachable = [True]
    m.watch_browser(lambda: reachable[0])
    assert value(m, "crawler_browser_up") == 1
    reachable[0] = False
    assert value(m, "crawler_browser_up") == 0


def test_config_reload_gauges_follow_loads_and_refusals() -> None:
    m = Metrics(CollectorRegistry())
    # No reload asked yet: nothing has failed (the alert reads == 0).
    assert value(m, "crawler_config_last_reload_successful") == 1
    first, second = "sources: []\n", "sources: [{name: a}]\n"
    m.config_loaded(first, at=1000.0)
    digest = hashlib.sha256(first.encode()).hexdigest()[:12]
    assert value(m, "crawler_config_info", {"hash": digest}) == 1
    assert value(m, "crawler_config_last_reload_success_timestamp_seconds") == 1000.0
    m.config_last_reload_successful.set(0)  # a reload refused
    assert value(m, "crawler_config_last_reload_successful") == 0
    # The refused file changed nothing: the old hash and load time stand.
    assert value(m, "crawler_config_info", {"hash": digest}) == 1
    assert value(m, "crawler_config_last_reload_success_timestamp_seconds") == 1000.0
    m.config_loaded(second, at=2000.0)
    assert value(m, "crawler_config_last_reload_successful") == 1
    info = [
        s.labels["hash"]
        for f in m.registry.collect()
        if f.name == "crawler_config_info"
        for s in f.samples
    ]
    assert info == [hashlib.sha256(second.encode()).hexdigest()[:12]], "one series, the new hash"
