"""What one /metrics scrape costs: payload bytes, series, and the crawler's CPU per scrape.

For each source count (default 20 and 200), starts bench/site.py and `crawler run` with that
many sources (one page each, run once at start, embedded store), waits until every source has
run once so every series exists, then measures the crawler process's CPU time (/proc) over
SCRAPES scrapes and over an idle period of the same length; the difference per scrape is the
server's cost of a scrape (collecting and formatting every series, plus serving it). That is
repeated ROUNDS times on the same crawler and the median printed, with the range: /proc counts
CPU in 10 ms ticks and the machine may be shared, so one round can be off.

Usage: .venv/bin/python bench/metrics_cost.py [SOURCES ...] [--scrapes 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import config, crawler_run, free_port, proc_stat, runs_finished, scrape, site


def measure(sources: int, scrapes: int, rounds: int) -> tuple[int, int, list[float]]:
    with tempfile.TemporaryDirectory(prefix="crawler-metrics-") as tmp, site(sources) as site_port:
        work, port = Path(tmp), free_port()
        cfg = config(work, site_port, port, sources, 1, "1h")
        with crawler_run(cfg, work / "crawler.log") as proc:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if runs_finished(port) >= sources:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((work / "crawler.log").read_text()[-2000:])
                time.sleep(0.2)
            body = scrape(port)
            series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
            costs = []
            for _ in range(rounds):
                # The same wall time idle and scraping: the idle CPU (timers, the scheduler) is
                # subtracted from the scraping period's.
                started, before = time.monotonic(), proc_stat(proc.pid).cpu
                for _ in range(scrapes):
                    scrape(port)
                elapsed = time.monotonic() - started
                busy = proc_stat(proc.pid).cpu - before
                before = proc_stat(proc.pid).cpu
                time.sleep(elapsed)
                idle = proc_stat(proc.pid).cpu - before
                costs.append((busy - idle) / scrapes)
    return len(body), series, costs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources", nargs="*", type=int, default=[20, 200])
    ap.add_argument("--scrapes", type=int, default=100, help="scrapes per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print("| sources | /metrics bytes | series | server CPU per scrape, median (range) |")
    print("| --- | --- | --- | --- |")
    for n in args.sources:
        size, series, costs = measure(n, args.scrapes, args.rounds)
        ms = sorted(c * 1000 for c in costs)
        print(
            f"| {n} | {size:,} | {series:,} | {statistics.median(ms):.1f} ms"
            f" ({ms[0]:.1f} to {ms[-1]:.1f}) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
