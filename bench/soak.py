"""Soak: `crawler run` with many sources on a short interval for a long time; does it stay flat?

Starts bench/site.py and `crawler run` (embedded store, or PostgreSQL with --dsn) with SOURCES
sources of PAGES pages each, every INTERVAL, all on 127.0.0.1. Every REPORT seconds prints the
source runs finished so far, the crawler's RSS, open file descriptors and CPU per run; at the end
the growth of RSS and fds per 1,000 runs after warm-up (the first WARMUP runs: caches, pools and
allocator arenas fill up then), by a least-squares line through the samples.

Usage: .venv/bin/python bench/soak.py [--minutes 20] [--sources 20] [--pages 2]
                                      [--interval 1s] [--report 30] [--warmup 2000] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import config, crawler_run, free_port, proc_stat, runs_finished, site

MIB = 2**20


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20)
    ap.add_argument("--sources", type=int, default=20)
    ap.add_argument("--pages", type=int, default=2, help="pages per source run")
    ap.add_argument("--interval", default="1s", help="each source's `every`")
    ap.add_argument("--report", type=float, default=30, help="seconds between samples")
    ap.add_argument("--warmup", type=int, default=2000, help="runs before growth is measured")
    ap.add_argument("--dsn", help="store into this PostgreSQL instead of the embedded store")
    args = ap.parse_args()
    pages = args.sources * args.pages
    with tempfile.TemporaryDirectory(prefix="crawler-soak-") as tmp, site(pages) as site_port:
        work, port = Path(tmp), free_port()
        cfg = config(work, site_port, port, args.sources, args.pages, args.interval, args.dsn)
        with crawler_run(cfg, work / "crawler.log") as proc:
            print(
                f"soak: {args.sources} sources x {args.pages} pages every {args.interval}, "
                f"{args.minutes:g} min; pid {proc.pid}",
                flush=True,
            )
            print(
                f"{'min':>6} {'runs':>8} {'RSS MiB':>8} {'fds':>5} {'CPU ms/run':>10}", flush=True
            )
            started = time.monotonic()
            last_runs, last_cpu = 0.0, proc_stat(proc.pid).cpu
            rss_pts: list[tuple[float, float]] = []
            fd_pts: list[tuple[float, float]] = []
            first_after_warmup: tuple[float, float, int] | None = None
            while time.monotonic() - started < args.minutes * 60:
                time.sleep(args.report)
                if proc.poll() is not None:
                    sys.exit(
                        "soak: the crawler exited:\n" + (work / "crawler.log").read_text()[-3000:]
                    )
                runs = runs_finished(port)
                st = proc_stat(proc.pid)
                per_run = (st.cpu - last_cpu) * 1000 / (runs - last_runs) if runs > last_runs else 0
                last_runs, last_cpu = runs, st.cpu
                print(
                    f"{(time.monotonic() - started) / 60:6.1f} {runs:8.0f} {st.rss / MIB:8.1f}"
                    f" {st.fds:5d} {per_run:10.1f}",
                    flush=True,
                )
                if runs >= args.warmup:
                    rss_pts.append((runs, st.rss / MIB))
                    fd_pts.append((runs, st.fds))
                    if first_after_warmup is None:
                        first_after_warmup = (runs, st.rss / MIB, st.fds)
            failed = (work / "crawler.log").read_text().count('"status": "failure"')
        if len(rss_pts) < 2 or first_after_warmup is None:
            sys.exit("soak: too few runs after warm-up to measure growth; run longer")
        runs0, rss0, fds0 = first_after_warmup
        runs1, rss1 = rss_pts[-1]
        print(
            f"soak: {runs1:.0f} source runs ({failed} logged failures); after warm-up "
            f"({runs0:.0f} runs): RSS {rss0:.1f} -> {rss1:.1f} MiB "
            f"({rss1 - rss0:+.2f} MiB over {runs1 - runs0:.0f} runs), "
            f"fitted growth {slope(rss_pts) * 1000 * 1024:+.1f} KiB per 1,000 runs; "
            f"fds {fds0} -> {fd_pts[-1][1]:.0f} ({slope(fd_pts) * 1000:+.2f} per 1,000 runs)"
        )


if __name__ == "__main__":
    main()
