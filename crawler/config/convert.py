"""Value converters for the configuration: a raw YAML value in, a typed value out.

Each converter raises `ValueError` with a message written for the user; the loader
(`crawler/config/loader.py`) turns it into `FILE:LINE: key: message`. Converters are plain
functions (or small factories returning one), so a config declaration names its converter and a
test can call it alone. Nothing here imports the rest of the crawler: selector and cron syntax
checks import their libraries lazily, so `crawler check` stays light and no import circle forms.
"""

from __future__ import annotations

import contextvars
import ipaddress
import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")
Converter = Callable[[Any], T]

MAX_URLS_PER_SOURCE = 100_000
SOURCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_RANGE = re.compile(r"\{(-?\d+)\.\.(-?\d+)(?:\.\.(\d+))?\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    None: 1,
}

# The folder of the configuration file being loaded: relative paths are relative to it. Set by
# `crawler.config.load_config` for the duration of one load (a context variable, so converters
# stay one-argument functions).
BASE_DIR: contextvars.ContextVar[Path] = contextvars.ContextVar("BASE_DIR", default=Path("."))


def kind(value: Any) -> str:
    """How a YAML value is named in messages."""
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def duration(value: Any) -> float:
    """Seconds from `30`, `1.5`, `500ms`, `30s`, `15m`, `2h` or `1d`."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 15m or 2h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a duration (use e.g. 500ms, 30s, 15m, 2h, 1d)")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def positive_duration(value: Any) -> float:
    seconds = duration(value)
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def size(value: Any) -> int:
    """Bytes from `1048576`, `512KiB`, `10MiB`, `1GB`."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as 10MiB")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a size (use e.g. 512KiB, 10MiB, 1GB)")
        unit = m.group(2).lower() if m.group(2) else None
        n = int(float(m.group(1)) * _SIZE_UNITS[unit])
    if n <= 0:
        raise ValueError("must be greater than zero")
    return n


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number, not {kind(value)}")
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


def whole_number(value: Any) -> int:
    """An integer, zero and negative ones included (a page number may start at 0)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number, not {kind(value)}")
    return value


def ratio(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError("must be a number greater than 0 and at most 1")
    return float(value)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {kind(value)}")
    return value


def string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, not {kind(value)}")
    return value


def string_list(value: Any) -> tuple[str, ...]:
    """A string or a list of strings (a lone string is a list of one)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("must be a name or a list of names")
    return tuple(value)


def choice(*allowed: str, upper: bool = False) -> Converter[str]:
    """A converter accepting one of `allowed` (compared in upper case when `upper`)."""

    def convert(value: Any) -> str:
        text = string(value)
        text = text.upper() if upper else text
        if text not in allowed:
            names = ", ".join(allowed[:-1]) + f" or {allowed[-1]}" if len(allowed) > 1 else ""
            raise ValueError(f"must be {names or allowed[0]}")
        return text

    return convert


def regex(value: Any) -> re.Pattern[str]:
    text = string(value)
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValueError(f"{text!r} is not a regular expression: {exc}") from None


def regex_list(value: Any) -> tuple[re.Pattern[str], ...]:
    return tuple(regex(v) for v in ([value] if isinstance(value, str) else _list(value)))


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"must be a list, not {kind(value)}")
    return value


def path(value: Any) -> Path:
    """A file system path; a relative one is relative to the configuration file's folder."""
    return BASE_DIR.get() / string(value)


def timezone(value: Any) -> str:
    """An IANA time zone name (`Europe/Paris`, `UTC`)."""
    text = string(value)
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{text!r} is not a time zone (use e.g. UTC or Europe/Paris)") from None
    return text


def source_name(value: Any) -> str:
    text = string(value)
    if not SOURCE_NAME.match(text):
        raise ValueError("use letters, digits, '_', '.', '-' (at most 64), starting with a letter")
    return text


def listen_address(value: Any) -> tuple[str, int]:
    text = string(value)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9410)")
    return host.strip("[]") or "0.0.0.0", int(port)


def dsn(value: Any) -> str:
    """A PostgreSQL URI or key=value string, without a password in it."""
    text = string(value)
    if not text.startswith(("postgresql://", "postgres://")) and "=" not in text:
        raise ValueError("must be a PostgreSQL URI (postgresql://user@host/db) or key=value string")
    if urlsplit(text).password:
        raise ValueError("must not contain a password: use password_env or password_file")
    return text


def http_url(value: Any) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
        raise ValueError(f"{value!r} is not an http(s) URL")
    if not urlsplit(value).netloc:
        raise ValueError(f"{value!r} is not an http(s) URL")
    if "@" in urlsplit(value).netloc:
        # The URL lands in logs, metrics' exemplars and crawler_jobs: no secret may ride in it.
        raise ValueError(
            "must not contain `user:password@`, which would land in logs: use `request.auth` "
            "with a password_env or password_file"
        )
    return value


def networks(value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A list of CIDR networks (`192.168.1.0/24`, `fd00::/8`); a bare address is a /32 (/128)."""
    out = []
    for item in _list(value):
        try:
            out.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not a network (e.g. 192.168.1.0/24)") from None
    return tuple(out)


def url_templates(value: Any) -> tuple[str, ...]:
    """A URL or a list of them, each with `{1..10}`-style ranges expanded."""
    out: list[str] = []
    for template in [value] if isinstance(value, str) else _list(value):
        out.extend(expand_urls(http_url(template)))
        if len(out) > MAX_URLS_PER_SOURCE:
            raise ValueError(f"expands to more than {MAX_URLS_PER_SOURCE} URLs")
    if not out:
        raise ValueError("needs at least one URL")
    return tuple(out)


def expand_urls(template: str) -> list[str]:
    """Expand `{1..10}` (and `{0..100..10}`) ranges; several ranges give every combination."""
    parts = _RANGE.split(template)
    if len(parts) == 1:
        return [template]
    literals = parts[0::4]
    ranges: list[list[str]] = []
    for start_s, end_s, step_s in zip(parts[1::4], parts[2::4], parts[3::4]):
        start, end, step = int(start_s), int(end_s), int(step_s or 1)
        if step <= 0:
            raise ValueError("a range step must be greater than zero")
        sign = 1 if end >= start else -1
        width = len(start_s) if start_s.startswith("0") and len(start_s) > 1 else 0
        ranges.append([str(i).zfill(width) for i in range(start, end + sign, sign * step)])
    total = 1
    for r in ranges:
        total *= len(r)
    if total > MAX_URLS_PER_SOURCE:
        raise ValueError(f"expands to {total} URLs, more than {MAX_URLS_PER_SOURCE}")
    out = []
    for combo in itertools.product(*ranges):
        pieces = [literals[0]]
        for value, literal in zip(combo, literals[1:]):
            pieces += [value, literal]
        out.append("".join(pieces))
    return out


def cron(value: Any) -> str:
    """A 5-field crontab expression (minute hour day month weekday)."""
    from apscheduler.triggers.cron import CronTrigger  # late: the scheduler is not needed to load

    text = string(value)
    if len(text.split()) != 5:
        raise ValueError(f"{text!r} must have 5 fields (minute hour day month weekday)")
    try:
        CronTrigger.from_crontab(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid cron expression: {exc}") from None
    return text
