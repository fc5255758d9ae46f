"""Reloading the configuration while running: SIGHUP, `systemctl reload`, `crawler reload`.

The file is read and validated exactly as `crawler check` does. An invalid file, or one that
changes a setting a running crawler cannot take (crawler.config.diff: anything but `sources`
and `log_level`), changes nothing: one ERROR line lists every problem as `FILE:LINE: key:
message`, and `crawler_config_last_reload_successful` is 0 until a reload succeeds. A valid
one is handed to the service, which applies it part by part; this module then logs which
sources were added, removed and changed (names only) and sets the gauges, as Prometheus does
for its own reloads: `crawler_config_last_reload_successful`,
`crawler_config_last_reload_success_timestamp_seconds` and `crawler_config_info{hash}` (the
first 12 hex digits of the SHA-256 of the loaded file's text: `Metrics.config_loaded`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from crawler.config.diff import ConfigDiff, diff
from crawler.config.root import Config, load_config
from crawler.errors import ConfigError, ConfigProblem
from crawler.observability.metrics import Metrics

log = logging.getLogger("crawler.reload")


def file_text(path: Path) -> str:
    """The file's text, as the loader reads it (empty when it cannot be read)."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def short_hash(text: str) -> str:
    """As `crawler_config_info{hash}` has it."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class Reloads:
    """The running configuration, its hash and the outcome of the last reload."""

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.config, self.metrics = config, metrics
        text = file_text(config.path)
        self.hash = short_hash(text)
        self.attempts = 0  # reloads done, taken or refused (`crawler reload` waits for it)
        self.ok = True
        self.at = time.time()
        self.problems: list[str] = []
        self.change = ConfigDiff()  # what the last successful reload changed
        metrics.config_loaded(text, self.at)

    def summary(self) -> dict[str, Any]:
        """The last reload for /status (the start counts as the first, successful, load)."""
        return {
            "attempts": self.attempts,
            "ok": self.ok,
            "at": round(self.at, 3),
            "hash": self.hash,
            "problems": self.problems,
            "added": list(self.change.added),
            "removed": list(self.change.removed),
            "changed": list(self.change.changed),
        }

    async def load(self) -> tuple[Config, ConfigDiff, str] | None:
        """The file's new configuration and what it changes; None, logged and counted, when it
        is refused (invalid, or a setting that needs a restart)."""
        path = self.config.path
        text = await asyncio.to_thread(file_text, path)
        try:
            new = await asyncio.to_thread(load_config, path)
        except ConfigError as exc:
            self._refused("invalid configuration", exc.problems)
            return None
        change = diff(self.config, new)
        if change.restart:
            problems = await asyncio.to_thread(change.restart_problems, str(path))
            self._refused("settings that need a restart", problems)
            return None
        return new, change, text

    def applied(self, new: Config, change: ConfigDiff, text: str) -> None:
        """The service runs `new` (read from `text`) now: log what changed, set the gauges."""
        self.config, self.hash = new, short_hash(text)
        self.ok, self.at, self.problems, self.change = True, time.time(), [], change
        self.attempts += 1
        self.metrics.config_loaded(text, self.at)
        log.info(
            "configuration reloaded",
            extra={
                "added": list(change.added),
                "removed": list(change.removed),
                "changed": list(change.changed),
                "unchanged": len(change.unchanged),
                "hash": self.hash,
            },
        )

    def _refused(self, why: str, problems: list[ConfigProblem]) -> None:
        self.ok, self.at = False, time.time()
        self.attempts += 1
        self.problems = [str(p) for p in problems]
        self.metrics.config_last_reload_successful.set(0)
        # One line, every problem in it: the journal shows the whole story at once.
        log.error(
            "configuration reload refused; still running the previous configuration",
            extra={"reason": why, "problems": self.problems},
        )
