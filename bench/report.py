"""The benchmark's table: medians per crawler from bench/run.sh's runs, and the checks that make
the comparison fair (every crawler did the whole work).

Usage: python bench/report.py RUNS.tsv PAGES DSN
"""

from __future__ import annotations

import os
import statistics
import sys
from collections import defaultdict

LABELS = {
    "floor": "floor (aiohttp + parsel, no storage)",
    "scrapy": "Scrapy {scrapy} (no storage)",
    "pi-crawler": "**pi-crawler** (metrics, JSON logs, PostgreSQL)",
}
RECORDS_PER_PAGE = 20


def main(runs_file: str, pages: int, dsn: str) -> int:
    cpu: dict[str, list[float]] = defaultdict(list)
    rss: dict[str, list[float]] = defaultdict(list)
    problems = []
    with open(runs_file, encoding="utf-8") as runs:
        lines = runs.read().splitlines()
    for line in lines:
        name, user, sys_, kib, records = line.split("\t")
        cpu[name].append((float(user) + float(sys_)) * 1000 / pages)
        rss[name].append(int(kib) / 1024)
        if records != "-" and int(records) != pages * RECORDS_PER_PAGE:
            problems.append(f"{name} extracted {records} records, not {pages * RECORDS_PER_PAGE}")
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT count(*) FROM scraped_data").fetchone()
        jobs = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'success'), count(*) FROM crawler_jobs"
        ).fetchone()
    assert rows is not None and jobs is not None
    if rows[0] != pages * RECORDS_PER_PAGE:
        problems.append(f"pi-crawler stored {rows[0]} rows, not {pages * RECORDS_PER_PAGE}")
    if jobs[0] != jobs[1]:
        problems.append(f"pi-crawler: only {jobs[0]} of {jobs[1]} runs succeeded")

    floor = statistics.median(cpu["floor"])
    scrapy = os.environ.get("BENCH_SCRAPY_VERSION", "")  # from the peer's venv, via run.sh
    reps = len(cpu["floor"])
    print(f"\n{pages:,} pages x {RECORDS_PER_PAGE} records, median of {reps} (whole process):\n")
    print("| crawler | CPU s / 1,000 pages | vs floor | peak RSS |")
    print("| --- | --- | --- | --- |")
    for name, label in LABELS.items():
        c, m = statistics.median(cpu[name]), statistics.median(rss[name])
        label = label.format(scrapy=scrapy)
        print(f"| {label} | {c:.2f} | {c / floor:.2f}x | {m:.1f} MiB |")
    print(f"\npi-crawler: {rows[0]} rows in scraped_data, {jobs[0]}/{jobs[1]} runs succeeded")
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
