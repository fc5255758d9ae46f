"""Writes replay.test.yml: a week of one sparse source, replayed through the alert rules.

The week a flaky home set-up gives a source of ten pages every 30 minutes (runs at :07 and
:37): occasional one- and two-page failures, a 20-minute Wi-Fi drop of the Pi (it cannot be
scraped and its run in that time fails), and the site down for 3 hours. The test asserts, over
the whole week, exactly which alerts fire, from when to when, and that each fires as one
episode: nothing for the blips, the outage within the times stated in docs/runbooks.md.

Run `python3 prometheus/tests/replay.py` after changing it; tests/ops/test_alerting_config.py
checks that replay.test.yml is what this script writes.

The series are what the crawler exports: counters created at 0 where crawler/metrics.py does so
(pages, not modified, failed pages, runs, records), error kinds on first use except those the
(long-running) process had already seen before the week began; `circuit_open` first appears in
the outage. The alerts read the failed pages (docs/metrics.md), so its first run counts too.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

OUT = Path(__file__).with_name("replay.test.yml")
WEEK = 7 * 24 * 60  # minutes; one sample a minute, as with a 30-60 s scrape
PAGES = 10
RUN_MINUTES = (7, 37)  # past each hour; the evaluation every 5 minutes sees each run's jump
INSTANCE = 'job="crawler", instance="pi:9410"'
SOURCE = f'{INSTANCE}, source="news"'
HOST = f'{INSTANCE}, host="news.example"'


def at(day: int, hour: int, minute: int) -> int:
    return (day * 24 + hour) * 60 + minute


# --- the week's events ------------------------------------------------------------------
WIFI_DOWN = range(at(2, 9, 20), at(2, 9, 40))  # the Pi unreachable 20 minutes
SITE_DOWN = range(at(4, 13, 50), at(4, 16, 50))  # the site answers 503 for 3 hours


def blips() -> dict[int, int]:
    """Failed pages per run, outside the outages: about four one-page and one two-page
    failure a day, at random runs (seeded: the same week every time)."""
    rng = random.Random(19)
    runs = [m for m in range(WEEK) if m % 60 in RUN_MINUTES]
    failed: dict[int, int] = {}
    for run in runs:
        if run in WIFI_DOWN or run in SITE_DOWN:
            continue
        roll = rng.random()
        if roll < 4 / 48:
            failed[run] = 1
        elif roll < 5 / 48:
            failed[run] = 2
    return failed


# --- the crawler's series ---------------------------------------------------------------
class Week:
    """Minute-by-minute values of every series, from the runs' outcomes."""

    def __init__(self) -> None:
        small = blips()
        counters = {"pages": 0.0, "not_modified": 0.0, "ok_runs": 0.0, "failed_runs": 0.0}
        errors = {"http_5xx": 41.0, "timeout": 12.0, "connect": 3.0}  # seen before the week
        born: dict[str, int] = {}
        stored = 5000.0
        opens = 0.0
        state = 0.0
        last_success = 0.0
        rows: dict[str, list[float | None]] = {}

        def put(name: str, value: float | None) -> None:
            rows.setdefault(name, []).append(value)

        for minute in range(WEEK + 1):
            if minute % 60 in RUN_MINUTES:
                if minute in SITE_DOWN:
                    # The breaker opens after the first run's ten 503s; later runs send its
                    # three half-open probes (503 again) and skip the rest (circuit_open).
                    first = minute - 30 not in SITE_DOWN
                    errors["http_5xx"] += PAGES if first else 3
                    if not first:
                        errors["circuit_open"] = errors.get("circuit_open", 0) + 7
                        born.setdefault("circuit_open", minute)
                    counters["failed_runs"] += 1
                    opens += 1
                    state = 2  # open, then half-open 10 s later until the next run
                elif minute in WIFI_DOWN:
                    errors["connect"] += PAGES
                    counters["failed_runs"] += 1
                    opens += 1
                    state = 2
                else:
                    bad = small.get(minute, 0)
                    errors["http_5xx" if bad == 2 else "timeout"] += bad
                    counters["pages"] += 6 - min(bad, 6)
                    counters["not_modified"] += 4
                    counters["ok_runs"] += 1
                    stored += 30
                    state = 0
                    last_success = minute * 60 + 20
            down = minute in WIFI_DOWN  # the Pi cannot be scraped: no samples, up = 0
            put(f"up{{{INSTANCE}}}", 0 if down else 1)
            put('up{job="node", instance="pi:9100"}', 0 if down else 1)

            def seen(value: float, down: bool = down) -> float | None:
                return None if down else value

            put(f"crawler_pages_total{{{SOURCE}}}", seen(counters["pages"]))
            put(f"crawler_not_modified_total{{{SOURCE}}}", seen(counters["not_modified"]))
            put(
                f'crawler_source_runs_total{{{SOURCE}, outcome="success"}}',
                seen(counters["ok_runs"]),
            )
            put(
                f'crawler_source_runs_total{{{SOURCE}, outcome="failure"}}',
                seen(counters["failed_runs"]),
            )
            # Every kind's failed pages, in one series that exists from start-up.
            put(f"crawler_source_failed_pages_total{{{SOURCE}}}", seen(sum(errors.values())))
            for kind in ("http_5xx", "timeout", "connect", "circuit_open"):
                if kind in errors and minute >= born.get(kind, 0):
                    put(
                        f'crawler_fetch_errors_total{{{SOURCE}, error_kind="{kind}"}}',
                        seen(errors[kind]),
                    )
                else:
                    put(f'crawler_fetch_errors_total{{{SOURCE}, error_kind="{kind}"}}', None)
            put(f"crawler_source_last_success_timestamp_seconds{{{SOURCE}}}", seen(last_success))
            put(f"crawler_source_interval_seconds{{{SOURCE}}}", seen(1800))
            put(f'crawler_records_stored_total{{{SOURCE}, backend="postgres"}}', seen(stored))
            put(f"crawler_records_spooled_total{{{SOURCE}}}", seen(0))
            put(f"crawler_records_refused_total{{{SOURCE}}}", seen(0))
            put(f"crawler_circuit_state{{{HOST}}}", seen(state))
            put(f'crawler_circuit_transitions_total{{{HOST}, state="open"}}', seen(opens))
            put(f"process_start_time_seconds{{{INSTANCE}}}", seen(0))
            put(f"crawler_database_up{{{INSTANCE}}}", seen(1))
            put(f"crawler_ready{{{INSTANCE}}}", seen(1))
            put(f"crawler_spool_records{{{INSTANCE}}}", seen(0))
            put(f"crawler_spool_bytes{{{INSTANCE}}}", seen(4096))
            put(f"crawler_spool_max_bytes{{{INSTANCE}}}", seen(2**28))
            put(f"crawler_spool_oldest_age_seconds{{{INSTANCE}}}", seen(0))
        self.series: dict[str, list[float | None]] = rows


def notation(values: Sequence[float | None]) -> str:
    """promtool's expanding notation: runs of one value as `vxN`, missing samples as `_xN`."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        value, count = values[i], j - i + 1
        value = None if value is None else float(value)
        if value is None:  # `_xN` is N missing samples ...
            out.append("_" if count == 1 else f"_x{count}")
        else:  # ... but `vxN` is v, then N more
            token = str(int(value)) if value.is_integer() else str(value)
            out.append(token if count == 1 else f"{token}x{count - 1}")
        i = j + 1
    return " ".join(out)


# --- what must fire, and when (times of the first and last firing evaluation) ------------
def hm(minutes: int) -> str:
    d, rest = divmod(minutes, 24 * 60)
    return f"{d}d{rest // 60}h{rest % 60}m"


# (labels of the ALERTS series, first firing, last firing). Nothing else may fire all week.
EXPECTED: list[tuple[str, int, int]] = [
    # The fast pair: the second failed run (14:37) is two in the hour; `for: 2m` rounds up to
    # the next 5-minute evaluation. It holds until 15 minutes after the good run at 17:07.
    (
        'alertname="CrawlerSourceErrorBudgetBurn", burn="fast", job="crawler", '
        'severity="critical", source="news"',
        at(4, 14, 45),
        at(4, 17, 20),
    ),
    # The slow pair: the first failed run (14:07) already takes the 6 hours, with their few
    # failed pages, past 10 %; the second keeps its short window failing: `for: 1h` later
    # (inhibited in Alertmanager by the fast pair).
    (
        'alertname="CrawlerSourceErrorBudgetBurn", burn="slow", job="crawler", '
        'severity="warning", source="news"',
        at(4, 15, 10),
        at(4, 17, 20),
    ),
    # No success since 13:37: two intervals and `for: 5m` later (inhibited in Alertmanager
    # by the burn alert above).
    (
        'alertname="CrawlerSourceOverdue", job="crawler", severity="warning", source="news"',
        at(4, 14, 45),
        at(4, 17, 5),
    ),
    # The breaker opened at 14:07 and reopened at every run: an hour later.
    (
        'alertname="CrawlerCircuitOpen", host="news.example", instance="pi:9410", '
        'job="crawler", severity="warning"',
        at(4, 15, 10),
        at(4, 17, 5),
    ),
]


def expr_test(expr: str, samples: list[tuple[str, float]]) -> str:
    body = "".join(
        f"          - labels: '{{{labels}}}'\n            value: {value:g}\n"
        for labels, value in samples
    )
    return f"      - expr: '{expr}'\n        eval_time: 7d\n" + (
        f"        exp_samples:\n{body}" if samples else "        exp_samples: []\n"
    )


def render(week: Week, expected: list[tuple[str, int, int]]) -> str:
    firing = 'ALERTS{alertstate="firing", alertname!="CrawlerWatchdog"}'

    def with_state(labels: str) -> str:
        return labels.replace('alertname="', 'alertstate="firing", alertname="', 1)

    def samples(value: Callable[[int, int], float]) -> list[tuple[str, float]]:
        return [(with_state(labels), value(first, last)) for labels, first, last in expected]

    lines = [
        "# GENERATED by prometheus/tests/replay.py: edit that, then run it.",
        "#",
        "# The noise replay: a week of one sparse source (ten pages every 30 minutes) with",
        "# occasional one- and two-page failures, a 20-minute Wi-Fi drop of the Pi on day 2",
        "# (09:20-09:40) and its site down for 3 hours on day 4 (13:50-16:50), through the",
        "# crawler, target and threshold rules. Over the whole week exactly these alerts fire,",
        "# each as one unbroken episode: the burn-rate pair, CrawlerSourceOverdue and",
        "# CrawlerCircuitOpen for the outage; nothing for the blips or the Wi-Fi drop.",
        "",
        "rule_files:",
        "  - ../rules/thresholds.yml",
        "  - ../rules/crawler.yml",
        "  - ../rules/meta.yml",
        "",
        "# Every 5 minutes: a week in seconds of promtool time. Each run's jump still falls",
        "# inside a 5-minute window at some evaluation (runs at :07 and :37).",
        "evaluation_interval: 5m",
        "",
        "tests:",
        "  - name: a week of blips, a Wi-Fi drop and a 3-hour outage of a sparse source",
        "    interval: 1m",
        "    input_series:",
    ]
    for name, values in week.series.items():
        lines.append(f"      - series: '{name}'")
        lines.append(f"        values: '{notation(values)}'")
    lines.append("    promql_expr_test:")
    lines.append("      # First firing evaluation of each alert (seconds into the week).")
    body = expr_test(f"min_over_time(timestamp({firing})[7d:5m])", samples(lambda f, _: f * 60))
    body += "      # Last firing evaluation.\n"
    body += expr_test(
        f"max_over_time(timestamp({firing})[7d:5m])", samples(lambda _, last: last * 60)
    )
    body += "      # Firing at every evaluation in between: one episode each, no flapping.\n"
    body += expr_test(
        f"count_over_time({firing}[7d])", samples(lambda f, last: (last - f) // 5 + 1)
    )
    return "\n".join(lines) + "\n" + body


def main() -> None:
    OUT.write_text(render(Week(), EXPECTED))


if __name__ == "__main__":
    main()
