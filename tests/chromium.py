"""A real headless Chromium for the render tests and the render soak, started by the tests with
its DevTools port on 127.0.0.1 (Debian's `chromium`, installed by scripts/test).

The flags keep it off every network but the crawler's: no background services, no QUIC, and
a proxy that does not exist for anything the crawler does not intercept and fulfil itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.helpers import free_port, require, wait_for

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    # WebRTC only through that proxy (no STUN/ICE over UDP); other sites' frames in the page's
    # process, where the tab's interception reaches them (crawler/render/browser.py's alike).
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--force-webrtc-ip-handling-policy",
    "--disable-site-isolation-trials",
)


def chromium_path() -> str:
    """The Chromium binary; fails loudly (never skips) when scripts/test has not installed it."""
    return require("chromium")


class Chromium:
    """One Chromium process group on a free DevTools port; `kill()` it, `start()` it again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.profile = Path(tempfile.mkdtemp(prefix="test-chromium-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Chromium:
        self.proc = subprocess.Popen(
            [
                chromium_path(),
                *FLAGS,
                f"--user-data-dir={self.profile}",
                "--remote-debugging-address=127.0.0.1",
                f"--remote-debugging-port={self.port}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self.version, timeout=30, interval=0.1)
        return self

    def version(self) -> dict[str, str] | None:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/json/version", timeout=2) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]
        except OSError:
            return None

    def targets(self) -> list[dict[str, str]]:
        """The browser's page targets (open tabs), from `/json/list`."""
        with urllib.request.urlopen(f"{self.endpoint}/json/list", timeout=5) as resp:
            return [t for t in json.loads(resp.read()) if t.get("type") == "page"]

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash or an OOM kill would, and reap it."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def processes(root_pid: int) -> list[int]:
    """`root_pid` and every process below it (/proc), e.g. a Chromium and its renderers."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_mib(pid: int) -> float:
    """Resident memory of one process, in MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def zombies(pids: list[int]) -> list[int]:
    """Those of `pids` that are zombies (exited, never reaped)."""
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            out.append(pid)
    return out


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
