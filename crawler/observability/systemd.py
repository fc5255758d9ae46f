"""systemd integration: `Type=notify` readiness and watchdog pings over $NOTIFY_SOCKET.

A few lines of the documented datagram protocol rather than a dependency. The watchdog pings
come from a task on the event loop, so a blocked loop stops them and systemd restarts us.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("crawler.systemd")


def notify(message: str) -> bool:
    """Send `message` (e.g. "READY=1") to systemd; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        log.warning("sd_notify failed", extra={"error": str(exc)})
        return False


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC in seconds, if systemd asked for pings (and asked us, by PID)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        return max(0.1, int(usec) / 2_000_000)
    except ValueError:
        return None


async def watchdog_loop(interval: float) -> None:
    """Ping systemd every `interval` seconds for as long as the event loop turns."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
