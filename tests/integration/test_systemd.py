"""systemd: READY=1 after start-up, WATCHDOG=1 from the event loop, RELOADING=1 and READY=1
around a reload (SIGHUP), STOPPING=1 on SIGTERM."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.site import Site, quote_source


def test_notify_ready_watchdog_and_stopping(
    tmp_path: Path, site: Site, write_config: Callable[..., Path]
):
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.5)
    cfg = write_config(sources=[quote_source("s", [f"{site.base}/page/1"], key=None)])
    # 2 s (the Pi's unit says 60): pings every second, so a loaded test machine that does not
    # schedule the process for half a second does not look like a blocked loop.
    env = {**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "2000000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "crawler", "run", "-c", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    messages: list[tuple[float, str]] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(m == "WATCHDOG=1" for _, m in messages) < 3:
            try:
                messages.append((time.monotonic(), sock.recv(256).decode()))
            except TimeoutError:
                continue
        # `systemctl reload` (ExecReload= sends SIGHUP): RELOADING=1, then READY=1 when done.
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and [m for _, m in messages].count("READY=1") < 2:
            try:
                messages.append((time.monotonic(), sock.recv(256).decode()))
            except TimeoutError:
                continue
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "STOPPING=1" not in [m for _, m in messages]:
            try:
                messages.append((time.monotonic(), sock.recv(256).decode()))
            except TimeoutError:
                continue
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    names = [m for _, m in messages]
    assert names[0] == "READY=1", names
    pings = [t for t, m in messages if m == "WATCHDOG=1"]
    assert len(pings) >= 3
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < 2.0, gaps  # pinged at half of WATCHDOG_USEC: never late enough to be killed
    assert "STOPPING=1" in names
    reloading = [i for i, m in enumerate(names) if m.startswith("RELOADING=1\nMONOTONIC_USEC=")]
    assert len(reloading) == 1 and "READY=1" in names[reloading[0] :], names
