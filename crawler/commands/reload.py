"""`crawler reload -c FILE`: make the running crawler read its configuration again.

By then the file has passed `crawler check`'s validation (a problem: exit 2, nothing sent).
The running crawler is found through `<state_dir>/crawler.pid` and sent SIGHUP, as
`systemctl reload crawler` does; then its `/status` tells how the reload went, which the
journal also says: exit 0 when it took the file (and what it changed), 1 when it refused it
(every problem printed: a setting that needs a restart, say), 3 when no crawler is running.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from crawler.commands.status import EXIT_NOT_RUNNING, ask_crawler
from crawler.config.root import Config
from crawler.observability.pidfile import PID_FILE, running_pid

WAIT = 60.0  # seconds for the crawler to report the reload (a Pi reads a big file slowly)


def command(config: Config) -> int:
    pid = running_pid(config.state_dir)
    if pid is None:
        where = config.state_dir / PID_FILE
        print(f"crawler: no crawler is running (no live pid in {where})", file=sys.stderr)
        return EXIT_NOT_RUNNING
    before, why = ask_crawler(config)
    os.kill(pid, signal.SIGHUP)
    if before is None:
        print(f"signalled the crawler (pid {pid}); its log says how the reload went ({why})")
        return 0
    attempts = before["crawler"]["reload"]["attempts"]
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        time.sleep(0.2)
        after, _ = ask_crawler(config)
        reload: dict[str, Any] = (after or {}).get("crawler", {}).get("reload") or {}
        if reload.get("attempts", attempts) <= attempts:
            continue
        if reload["ok"]:
            changes = [
                f"{what} {', '.join(reload[what])}"
                for what in ("added", "removed", "changed")
                if reload[what]
            ]
            print(f"reloaded (pid {pid}): {'; '.join(changes) or 'no source changed'}")
            return 0
        print(
            "crawler: the running crawler refused the file and keeps its configuration:",
            file=sys.stderr,
        )
        for problem in reload["problems"]:
            print(problem, file=sys.stderr)
        return 1
    print(f"crawler: signalled pid {pid}; no reload reported within {WAIT:g}s", file=sys.stderr)
    return 1
