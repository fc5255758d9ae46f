"""Rendering's costs (issue 26), measured against the single-page-app shop of the render tests.

    soak  `crawler run` with one `render` source (a local Chromium the crawler starts, restarts
          after `restart_after` pages and reaps) every second until RENDERS pages have rendered;
          every REPORT renders prints the crawler's RSS, its open fds, Chromium's process count
          and RSS, and zombies. Flat figures mean no context, tab or process leaks.
    rss   peak RSS (/usr/bin/time) of `crawler once` reading the shop's 3 pages rendered (a
          Chromium started here, reached by `endpoint`, so the crawler alone is measured)
          against the same 3 pages served already rendered, fetched plainly: the Pi-side cost
          of rendering. REPEATS runs each, medians.

Usage: .venv/bin/python bench/render.py soak [--renders 500] [--report 50] [--restart-after 200]
       .venv/bin/python bench/render.py rss [--repeats 5]
Run it after scripts/test (which installs Chromium). Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from harness import CRAWLER, crawler_run, free_port, proc_stat, samples, scrape  # noqa: E402

from tests.chromium import Chromium, chromium_path, processes, rss_mib, zombies  # noqa: E402
from tests.render_site import PAGES, ShopSite  # noqa: E402

MIB = 2**20
FIELDS = """\
    items: div.product
    fields:
      id: "xpath:./@data-id"
      name: "h2::text"
      price: {selector: ".price::text", type: decimal}
    key: [id]
"""


def config(work: Path, browser: str, urls: str, render: bool, every: str = "1h") -> Path:
    render_key = '    render: {wait_for: "p.ready", timeout: 30s}\n' if render else ""
    text = f"""\
instance: bench
log_level: WARNING
state_dir: {work}/var
metrics: {{listen: "127.0.0.1:{free_port()}"}}
fetch: {{politeness_delay: 0s, robots: false, conditional_get: false}}
{browser}sources:
  - name: shop
    every: {every}
    urls: [{urls}]
{render_key}{FIELDS}"""
    path = work / "crawler.yaml"
    path.write_text(text)
    return path


def soak(renders: int, report: int, restart_after: int) -> None:
    shop = ShopSite().start()
    try:
        with tempfile.TemporaryDirectory(prefix="crawler-render-soak-") as tmp:
            work = Path(tmp)
            browser = (
                f"browser: {{executable: {chromium_path()}, max_pages: 2, "
                f"restart_after: {restart_after}}}\n"
            )
            urls = ", ".join(f'"{shop.base}/shop?page={1 + i % PAGES}&n={i}"' for i in range(10))
            cfg = config(work, browser, urls, render=True, every="1s")
            port = int(cfg.read_text().split('listen: "127.0.0.1:')[1].split('"')[0])
            print(
                f"render soak: {renders} renders, 10 pages a run every second, restart after "
                f"{restart_after} pages",
                flush=True,
            )
            print(
                f"{'renders':>8} {'RSS MiB':>8} {'fds':>5} {'chromium':>9} "
                f"{'chr. MiB':>9} {'zombies':>8} {'s':>6}",
                flush=True,
            )
            with crawler_run(cfg, work / "crawler.log") as proc:
                started, next_report = time.monotonic(), report
                while True:
                    time.sleep(0.5)
                    if proc.poll() is not None:
                        sys.exit(f"crawler exited: {(work / 'crawler.log').read_text()[-2000:]}")
                    try:
                        seen = samples(scrape(port))
                    except OSError:
                        continue
                    done = seen.get('crawler_render_seconds_count{source="shop"}', 0.0)
                    if done < next_report:
                        continue
                    st = proc_stat(proc.pid)
                    tree = [p for p in processes(proc.pid) if p != proc.pid]
                    chromium_rss = sum(rss_mib(p) for p in tree if Path(f"/proc/{p}").exists())
                    print(
                        f"{done:>8.0f} {st.rss / MIB:>8.1f} {st.fds:>5} {len(tree):>9} "
                        f"{chromium_rss:>9.0f} {len(zombies(tree)):>8} "
                        f"{time.monotonic() - started:>6.0f}",
                        flush=True,
                    )
                    next_report += report
                    if done >= renders:
                        break
                errors = {
                    kind: seen.get(
                        f'crawler_fetch_errors_total{{error_kind="{kind}",source="shop"}}', 0
                    )
                    for kind in ("render_timeout", "browser")
                }
                print(f"render failures: {errors}")
                count = seen.get('crawler_render_seconds_count{source="shop"}', 0.0)
                total = seen.get('crawler_render_seconds_sum{source="shop"}', 0.0)
                print(f"render time: mean {total / max(count, 1) * 1000:.0f} ms over {count:.0f}")
    finally:
        shop.stop()


def peak_rss(cfg: Path) -> float:
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%M", str(CRAWLER), "once", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0:
        sys.exit(f"crawler once failed: {out.stderr[-2000:]}")
    return int(out.stderr.strip().splitlines()[-1]) / 1024


def rss(repeats: int) -> None:
    shop = ShopSite().start()
    chromium = Chromium().start()
    try:
        with tempfile.TemporaryDirectory(prefix="crawler-render-rss-") as tmp:
            work = Path(tmp)
            rendered = config(
                work,
                f"browser: {{endpoint: {chromium.endpoint}}}\n",
                ", ".join(f'"{shop.base}/shop?page={i}"' for i in range(1, PAGES + 1)),
                True,
            ).read_text()
            plain = config(
                work,
                "",
                ", ".join(f'"{shop.base}/static?page={i}"' for i in range(1, PAGES + 1)),
                False,
            ).read_text()
            figures: dict[str, list[float]] = {"plain": [], "render": []}
            for _ in range(repeats):
                for name, text in (("plain", plain), ("render", rendered)):
                    cfg = work / f"{name}.yaml"
                    cfg.write_text(text.replace(f"{work}/var", f"{work}/var-{name}"))
                    figures[name].append(peak_rss(cfg))
            for name, values in figures.items():
                print(
                    f"{name:>7}: peak RSS median {statistics.median(values):.1f} MiB "
                    f"(runs: {', '.join(f'{v:.1f}' for v in values)})"
                )
            cost = statistics.median(figures["render"]) - statistics.median(figures["plain"])
            print(f"rendering adds {cost:.1f} MiB to the crawler's peak RSS")
    finally:
        chromium.stop()
        shop.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("soak")
    s.add_argument("--renders", type=int, default=500)
    s.add_argument("--report", type=int, default=50)
    s.add_argument("--restart-after", type=int, default=200)
    r = sub.add_parser("rss")
    r.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.mode == "soak":
        soak(args.renders, args.report, args.restart_after)
    else:
        rss(args.repeats)


if __name__ == "__main__":
    main()
