"""A source's series leave `/metrics` when a reload removes the source (crawler.run.reload).

Prometheus then stops seeing them (stale), as it does a target's series when the target goes;
without this a removed source's last counters and timestamps would stay exported until the next
restart, and the alerts on a source's age of last success would fire for it.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from crawler.observability.metrics import Metrics


def forget_source(metrics: Metrics, source: str) -> None:
    """Remove every series whose `source` label is `source`, of every metric in `metrics`."""
    for metric in vars(metrics).values():
        if not isinstance(metric, (Counter, Gauge, Histogram)):
            continue
        names: tuple[str, ...] = metric._labelnames  # prometheus_client's, as exposition reads
        if "source" not in names:
            continue
        at = names.index("source")
        with metric._lock:
            gone = [values for values in metric._metrics if values[at] == source]
        for values in gone:
            metric.remove(*values)
