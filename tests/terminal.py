"""Run a command with stdout and/or stderr on a pseudo-terminal, as a person at a terminal would.

Each stream gets its own pty, so a test can tell what went to stdout from what went to stderr;
a stream that is not a terminal is a pipe. Output is returned as text, with the terminal's CRLF
turned back into LF.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from dataclasses import dataclass


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run(
    args: list[str],
    *,
    stdout_tty: bool,
    stderr_tty: bool,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> Result:
    """Run `args` to completion; the chosen streams are terminals (80 columns), others pipes."""
    masters: dict[str, int] = {}
    slaves: dict[str, int] = {}
    for name, tty in (("stdout", stdout_tty), ("stderr", stderr_tty)):
        if tty:
            masters[name], slaves[name] = pty.openpty()
    environ = {**os.environ, **(env or {})}
    environ.setdefault("TERM", "xterm-256color")
    environ.setdefault("COLUMNS", "80")
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=slaves.get("stdout", subprocess.PIPE),
        stderr=slaves.get("stderr", subprocess.PIPE),
        env=environ,
    )
    for fd in slaves.values():
        os.close(fd)
    fds: dict[int, str] = {fd: name for name, fd in masters.items()}
    for name in ("stdout", "stderr"):
        pipe = getattr(proc, name)
        if pipe is not None:
            fds[pipe.fileno()] = name
    chunks: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    deadline = time.monotonic() + timeout
    open_fds = set(fds)
    try:
        while open_fds:
            if time.monotonic() > deadline:
                raise AssertionError(f"{args} did not finish within {timeout}s")
            ready, _, _ = select.select(list(open_fds), [], [], 0.2)
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the pty's other end is closed
                    data = b""
                if data:
                    chunks[fds[fd]] += data
                else:
                    open_fds.discard(fd)
        returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for fd in masters.values():
            os.close(fd)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()

    def text(name: str) -> str:
        raw = chunks[name].decode(errors="replace")
        return raw.replace("\r\n", "\n") if name in masters else raw

    return Result(returncode, text("stdout"), text("stderr"))
