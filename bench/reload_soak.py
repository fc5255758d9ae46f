"""Reloads in a row while a source runs every second: RSS, tasks and runs, measured.

A `crawler run` on the embedded store crawls the test site (tests/site.py on 127.0.0.1) with a
source `busy` every second; the configuration file flips between two versions (`busy`'s fields
changed, a source `extra` added and removed) and the crawler gets SIGHUP, waiting for each
reload's outcome on /status before the next. Every `--every` reloads it prints the process's
RSS (`process_resident_memory_bytes`) and its asyncio task count (/status); at the end the runs
stored per source, which for `busy` should be about one per second of the soak.

    .venv/bin/python bench/reload_soak.py [--reloads 1000] [--every 200]

Bounded: about 0.1 s per reload plus a few seconds; loopback only.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.crawler_proc import CrawlerProcess, scrape
from tests.helpers import free_port, wait_for, write_config
from tests.site import Site, quote_source


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reloads", type=int, default=1000)
    p.add_argument("--every", type=int, default=200, help="print figures every N reloads")
    args = p.parse_args()
    site = Site().start()
    folder = Path(tempfile.mkdtemp(prefix="reload-soak-"))
    port = free_port()

    def write(flip: bool) -> Path:
        fields = {"text": "span.text::text", **({"author": "small.author::text"} if flip else {})}
        sources = [quote_source("busy", [f"{site.base}/page/0"], every="1s", fields=fields)]
        if flip:
            sources.append(quote_source("extra", [f"{site.base}/page/1"]))
        return write_config(
            folder, metrics={"listen": f"127.0.0.1:{port}"}, log_level="WARNING", sources=sources
        )

    def status() -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as r:
            document: dict[str, Any] = json.loads(r.read())
        return document

    def answers() -> bool:
        try:
            status()
        except OSError:
            return False
        return True

    def figures(done: int, took: float) -> None:
        rss = scrape(port)["process_resident_memory_bytes"] / 2**20
        crawler = status()["crawler"]
        ok = crawler["reload"]["ok"]
        print(f"| {done} | {took:.0f} | {rss:.1f} | {crawler['tasks']} | {ok} |", flush=True)

    crawler = CrawlerProcess(write(False), folder / "crawler.log")
    try:
        wait_for(answers, timeout=60)
        time.sleep(3)  # the first runs done
        print("| reloads | seconds | RSS MiB | tasks | last reload ok |")
        print("| --- | --- | --- | --- | --- |")
        figures(0, 0.0)
        started = time.monotonic()
        for i in range(1, args.reloads + 1):
            write(i % 2 == 1)
            crawler.proc.send_signal(signal.SIGHUP)
            wait_for(lambda i=i: status()["crawler"]["reload"]["attempts"] >= i, timeout=30)
            time.sleep(0.05)
            if i % args.every == 0:
                figures(i, time.monotonic() - started)
        took = time.monotonic() - started
    finally:
        code = crawler.stop()
        site.stop()
    db = sqlite3.connect(folder / "var" / "crawler.sqlite")
    try:
        runs = dict(db.execute("select source, count(*) from crawler_jobs group by source"))
    finally:
        db.close()
    print(f"\nexit {code}; {took:.0f} s of reloads; runs stored: {runs}")


if __name__ == "__main__":
    main()
