"""Logs: JSON lines for machines, short aligned lines for people at a terminal.

JSON (the contract Loki, Promtail and the dashboards rely on): one object per line on stdout
with `time`, `level`, `logger`, `message` (and `instance`); call sites add `source`, `url`,
`status`, `duration_ms`, `attempt`, `error_kind` through `extra=`. Per-request lines are DEBUG:
at INFO a busy crawler writes one line per source run, which keeps journald (in RAM on the Pi)
small.

Console: `HH:MM:SS LEVEL source  message key=value …`, the level coloured when the stream is a
colour terminal (not with NO_COLOR set, nor TERM=dumb). `log_format: auto` (the default) picks
console when the stream is a terminal and JSON otherwise, so systemd, Docker and Promtail keep
getting JSON without anyone configuring it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Attributes every LogRecord has: anything else on a record came through `extra=`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_LEVEL_COLOURS = {
    "DEBUG": "\x1b[2m",  # dim
    "INFO": "\x1b[32m",  # green
    "WARN": "\x1b[33m",  # yellow
    "ERROR": "\x1b[31m",  # red
    "CRIT": "\x1b[1;31m",  # bold red
}
# Short names keep the columns aligned (and match what people grep for).
_LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "CRIT"}
_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
SOURCE_WIDTH = 14


class _JsonFormatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{t}.{int(record.msecs):03d}Z"


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if not text or any(c in text for c in ' "\n\t'):
        # Quoted as a JSON string, so a value never runs into the next key.
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class ConsoleFormatter(logging.Formatter):
    """One short line per record: local time, level, source, message, key=value extras."""

    def __init__(self, colour: bool = False) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        extras = {
            k: v
            for k, v in vars(record).items()
            if k not in _STANDARD and k != "source" and v is not None
        }
        source = str(getattr(record, "source", None) or "")
        level = _LEVEL_NAMES.get(record.levelname, record.levelname)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        pairs = " ".join(f"{k}={_value(v)}" for k, v in extras.items())
        if self.colour:
            level_text = f"{_LEVEL_COLOURS.get(level, '')}{level:<5}{_RESET}"
            pairs = f"{_DIM}{pairs}{_RESET}" if pairs else ""
        else:
            level_text = f"{level:<5}"
        line = f"{stamp} {level_text} {source:<{SOURCE_WIDTH}} {record.getMessage()}"
        if pairs:
            line += "  " + pairs
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def wants_colour(stream: Any) -> bool:
    """Colour only for a terminal that can show it, and never against NO_COLOR (no-color.org)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return is_terminal(stream)


def resolve_format(fmt: str, stream: Any) -> str:
    """`json` or `console` for `fmt` (one of FORMATS) writing to `stream`."""
    if fmt == "auto":
        return "console" if is_terminal(stream) else "json"
    return fmt


def setup_logging(
    level: str = "INFO",
    instance: str | None = None,
    stream: TextIO | None = None,
    fmt: str = "auto",
) -> str:
    """Route every logger to one handler on `stream` (stdout by default; idempotent).

    Returns the format chosen (`json` or `console`).
    """
    out = stream or sys.stdout
    chosen = resolve_format(fmt, out)
    handler = logging.StreamHandler(out)
    if chosen == "console":
        handler.setFormatter(ConsoleFormatter(colour=wants_colour(out)))
    else:
        handler.setFormatter(
            _JsonFormatter(
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
    return chosen
