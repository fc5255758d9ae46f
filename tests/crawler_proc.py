"""Run `crawler run` as a subprocess in tests, and read back what it counted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import write_config
from tests.site import Site, quote_source


def outage_config(
    site: Site,
    tmp_path: Path,
    dsn: str,
    port: int,
    *,
    pages: int = 5,
    max_bytes: str = "64MiB",
    every: str = "1s",
) -> Path:
    """Key is the quote text, which carries the site's version: each bump makes new records."""
    source = quote_source("quotes", [f"{site.base}/page/{{0..{pages - 1}}}"], every=every)
    source["fields"]["author"] = "small.author::text"
    return write_config(
        tmp_path,
        instance="outage",
        log_level="DEBUG",
        metrics={"listen": f"127.0.0.1:{port}"},
        storage={"dsn": dsn, "batch_size": 50, "connect_timeout": "2s", "write_timeout": "5s"},
        spool={"max_bytes": max_bytes, "drain_batch": 100},
        fetch={"conditional_get": False, "retry": {"attempts": 1}},
        sources=[source],
    )


def run_cli(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m crawler ARGS…` to completion, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "crawler", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


class CrawlerProcess:
    """`crawler run` with stdout (JSON logs) captured to a file that survives SIGKILL."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crawler", "run", "-c", str(config)],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._out.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def read_logs(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:  # the last line of a killed process may be cut short
                continue
    return out


def counted_keys(logs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Every (source, key) the crawler said it committed to PostgreSQL or the spool."""
    keys = set()
    for entry in logs:
        if entry.get("message") in ("records stored", "records spooled"):
            keys.update((entry["source"], k) for k in entry["keys"])
    return keys


def scrape(port: int) -> dict[str, float]:
    """The crawler's /metrics as {series: value} (series without a space inside)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        body = r.read().decode()
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values
