"""Shared parts of the long-running benchmarks (bench/metrics_cost.py, bench/soak.py).

Starts bench/site.py and a `crawler run` with N sources on 127.0.0.1 only, reads the crawler's
/metrics, and reads a process's CPU time, RSS and open file descriptors from /proc (Linux).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CRAWLER = REPO / ".venv" / "bin" / "crawler"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:g}s") from None
            time.sleep(0.1)


@dataclass
class ProcStat:
    """One reading of a process: CPU seconds (user+sys), RSS bytes, open fds."""

    cpu: float
    rss: int
    fds: int


def proc_stat(pid: int) -> ProcStat:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return ProcStat(cpu, rss, fds)


def scrape(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return bytes(r.read())


def samples(body: bytes) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def runs_finished(port: int) -> float:
    return sum(
        v for k, v in samples(scrape(port)).items() if k.startswith("crawler_source_runs_total{")
    )


@contextmanager
def site(pages: int) -> Iterator[int]:
    """bench/site.py on a free port; yields the port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "site.py"), "--port", str(port), "--pages", str(pages)]
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/page/0")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def config(
    work: Path,
    site_port: int,
    metrics_port: int,
    sources: int,
    pages_per_source: int,
    every: str,
    dsn: str | None = None,
) -> Path:
    """A config with `sources` sources, each crawling its own `pages_per_source` pages."""
    storage = f'storage: {{dsn: "{dsn}"}}\n' if dsn else ""
    lines = [
        "instance: bench",
        "log_level: WARNING",
        f"state_dir: {work}/var",
        f'metrics: {{listen: "127.0.0.1:{metrics_port}"}}',
        storage.rstrip("\n"),
        "fetch: {concurrency: 4, per_host_concurrency: 64, politeness_delay: 0s,"
        " robots: false, conditional_get: false}",
        "sources:",
    ]
    for i in range(sources):
        first = i * pages_per_source
        last = first + pages_per_source - 1
        lines += [
            f"  - name: s{i:03d}",
            f"    every: {every}",
            f'    urls: ["http://127.0.0.1:{site_port}/page/{{{first}..{last}}}"]',
            "    items: div.quote",
            "    fields: {text: span.text::text, author: small.author::text,"
            " tags: {selector: a.tag::text, all: true}}",
            "    key: [text]",
        ]
    path = work / "crawler.yaml"
    path.write_text("\n".join(line for line in lines if line) + "\n", encoding="utf-8")
    return path


@contextmanager
def crawler_run(config_path: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`crawler run -c CONFIG` with its output in `log_path`; SIGTERM on the way out."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(CRAWLER), "run", "-c", str(config_path)], stdout=log, stderr=log
        )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
