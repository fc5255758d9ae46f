"""How commands find the running crawler: a pid file and a status token in the state directory.

`crawler run` writes `<state_dir>/crawler.pid` (its pid) and `<state_dir>/status.token` (a random
token, mode 0600) once it serves, and removes them when it stops. `crawler reload` signals that
pid; `crawler status` sends the token to `/status` (a local user who can read the state
directory, where the spool and the sessions live, may read the status without the password
Prometheus uses; the users file holds only bcrypt hashes, so there is no password to send).
A pid file left by a crawler killed with SIGKILL names a dead process, or another program's:
`running_pid` checks that the pid is alive and runs `crawler`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path

from crawler.errors import CrawlerError
from crawler.lifecycle import Part

log = logging.getLogger("crawler.service")

PID_FILE = "crawler.pid"
TOKEN_FILE = "status.token"


class PidFile(Part):
    """The pid and status token files, for as long as the part is open."""

    def __init__(self, state_dir: Path) -> None:
        self.pid_path = state_dir / PID_FILE
        self.token_path = state_dir / TOKEN_FILE
        self.token = secrets.token_urlsafe(32)

    async def open(self) -> None:
        other = running_pid(self.pid_path.parent)
        if other is not None and other != os.getpid():
            log.warning(
                "another crawler uses this state directory",
                extra={"pid": other, "state_dir": str(self.pid_path.parent)},
            )
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        _write(self.token_path, self.token, 0o600)
        _write(self.pid_path, f"{os.getpid()}\n", 0o644)

    async def close(self) -> None:
        mine = False
        with contextlib.suppress(CrawlerError):
            mine = running_pid(self.pid_path.parent) == os.getpid()
        if mine:
            for path in (self.pid_path, self.token_path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def _write(path: Path, text: str, mode: int) -> None:
    """Written whole or not at all (a reader never sees half a pid), with `mode` from the
    start (the token is never readable by others, even for a moment)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def running_pid(state_dir: Path) -> int | None:
    """The pid of the crawler serving from `state_dir`, or None when none is running;
    CrawlerError when this user may not read the pid file."""
    path = state_dir / PID_FILE
    try:
        pid = int(path.read_text().strip())
    except PermissionError as exc:  # not "no crawler": this user may not look
        raise CrawlerError(f"cannot read {path}: run as the crawler's user or root") from exc
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's (the service's): it is the crawler's pid
        pass
    with contextlib.suppress(OSError):  # reused by another program since a SIGKILL?
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"crawler" not in cmdline:
            return None
    return pid


def read_token(state_dir: Path) -> str | None:
    """The running crawler's status token, when this user may read it."""
    try:
        return (state_dir / TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None
