"""What one /metrics scrape costs: payload bytes, series, and the crawler's CPU per scrape.

For each source count (default 20 and 200), starts bench/site.py and `crawler run` with that
many sources (one page each, run once at start, embedded store), waits until every source has
run once so every series exists, then measures the crawler process's CPU time (/proc) over an
idle period and over SCRAPES scrapes of the same length; the difference per scrape is the
server's cost of a scrape (collecting and formatting every series, plus serving it).

Usage: .venv/bin/python bench/metrics_cost.py [SOURCES ...] [--scrapes 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import config, crawler_run, free_port, proc_stat, runs_finished, scrape, site


def measure(sources: int, scrapes: int) -> tuple[int, int, float]:
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
    return len(body), series, (busy - idle) / scrapes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources", nargs="*", type=int, default=[20, 200])
    ap.add_argument("--scrapes", type=int, default=200)
    args = ap.parse_args()
    print("| sources | /metrics bytes | series | server CPU per scrape |")
    print("| --- | --- | --- | --- |")
    for n in args.sources:
        size, series, cpu = measure(n, args.scrapes)
        print(f"| {n} | {size:,} | {series:,} | {cpu * 1000:.1f} ms |", flush=True)


if __name__ == "__main__":
    main()
