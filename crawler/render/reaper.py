"""The local browser's processes: found in /proc, and reaped once they exit, ours as a
subreaper when the browser dies before its renderers and crash handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

# How long `reap()` waits for a stopped browser's processes to go.
STOP_TIMEOUT = 5.0


def _procs() -> list[tuple[int, int, int, str]]:
    """(pid, ppid, pgid, state) of every process, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out.append((int(entry), int(fields[1]), int(fields[2]), fields[0]))
    return out


def group_of(pgid: int) -> list[int]:
    """The processes of a process group."""
    return [pid for pid, _, group, _ in _procs() if group == pgid]


def reap_orphans() -> int:
    """Reap the exited processes re-parented to us, a subreaper: the browser's renderers and
    crash handlers (which leave its process group) once it is gone. Never blocks."""
    me, reaped = os.getpid(), 0
    for pid, ppid, _, state in _procs():
        if ppid == me and state == "Z":
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                reaped += bool(done)
    return reaped


async def reap(pids: list[int]) -> None:
    """Wait (up to `STOP_TIMEOUT`) until none of `pids` is left, reaping the orphans among
    them and any other exited one re-parented to us meanwhile."""
    deadline = time.monotonic() + STOP_TIMEOUT
    while True:
        reap_orphans()
        alive = {pid for pid, _, _, state in _procs() if state != "Z"} & set(pids)
        if not alive or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


def become_subreaper() -> None:
    """Make the crawler the reaper of its browser's orphans (Linux `PR_SET_CHILD_SUBREAPER`):
    when the browser dies first, its renderers are re-parented to us, not to an init that a
    container may not have, and `LocalChromium.stop()` reaps them."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
