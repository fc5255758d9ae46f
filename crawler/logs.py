"""JSON logs: one object per line on stdout, with the fields Loki and people filter on.

Every line has `time`, `level`, `logger`, `message`; call sites add `source`, `url`, `status`,
`duration_ms`, `attempt`, `error_kind` through `extra=`. Per-request lines are DEBUG: at INFO a
busy crawler writes one line per source run, which keeps journald (in RAM on the Pi) small.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from pythonjsonlogger.json import JsonFormatter

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class _Formatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{t}.{int(record.msecs):03d}Z"


def setup_logging(level: str = "INFO", instance: str | None = None, stream: Any = None) -> None:
    """Route every logger to one JSON handler on stdout (idempotent)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        _Formatter(
            _FORMAT,
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"instance": instance} if instance else None,
            json_ensure_ascii=False,
        )
    )
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter stays out unless asked for.
    for noisy in ("apscheduler", "aiohttp.access", "psycopg"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
