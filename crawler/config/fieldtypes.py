"""The field types: `str`, `int`, `float`, `decimal`, `bool`, `datetime`, `url`, each a converter
from what a selector found to a clean value. A value that does not convert raises `Invalid`, which
the field pipeline (crawler/sources/fields.py) turns into a missing, counted value: never an
exception out of a page.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urljoin, urlsplit

TYPES = ("str", "int", "float", "decimal", "bool", "datetime", "url")

# Strings accepted by the `bool` type (after strip, case-insensitive).
_TRUE = frozenset({"true", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "off"})
_SIGNED = re.compile(r"^\s*[-\u2212]\s*\D{0,4}\d")  # "-3", "- £3", "-€3", U+2212
_ZERO_POINT = re.compile(r"^\s*[-+\u2212]?0[.,](\d+)\s*$")  # 0.123 / 0,123: never thousands
# "12", "-3.5", "0.25": no grouping possible (a lone separator before exactly three digits
# is the ambiguous case, "1.234", which the amount parser reads as thousands).
_PLAIN_NUMBER = re.compile(r"[-+]?\d{1,30}(?:\.(?:\d{1,2}|\d{4,30}))?\Z")
_ABSOLUTE = ("http://", "https://")
_ORIGIN = re.compile(r"https?://[^/?#]+")  # lower-case scheme: urljoin would lower it
_MAX_TEXT = 256  # longer strings are not numbers or dates: do not feed them to the parsers


class Invalid(ValueError):
    """Raised inside this module when a value does not convert (never leaves it)."""


# --------------------------------------------------------------------------- type converters


def scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        raise Invalid(f"{value!r} is a boolean")
    if isinstance(value, (int, float)):
        return repr(value)
    raise Invalid(f"{type(value).__name__} is not a scalar")


def _number(value: Any) -> Decimal:
    """A number from a JSON number or a human-written amount in any common locale.

    "1.234,56" and "1,234.56" are both 1234.56; "£51.77" is 51.77; a lone separator before
    exactly three digits groups thousands ("1,234" is 1234), except after a leading 0 ("0,123").
    """
    if isinstance(value, bool):
        raise Invalid("a boolean is not a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Invalid(f"{value!r} is not a finite number")
        return Decimal(repr(value))
    text = scalar_text(value)
    if _PLAIN_NUMBER.match(text):  # the common case, without the amount parser
        return Decimal(text)
    if len(text) > _MAX_TEXT or not any(c.isdigit() for c in text):
        raise Invalid(f"{text[:40]!r} holds no number")  # price-parser reads "free" as 0
    zero = _ZERO_POINT.match(text)
    if zero:
        amount: Decimal | None = Decimal("0." + zero.group(1))
    else:
        from price_parser import Price  # made for "£1.234,56"-style amounts

        amount = Price.fromstring(text).amount
    if amount is None:
        raise Invalid(f"{text[:40]!r} holds no number")
    # price-parser reads amounts, which it takes as unsigned: put a leading minus back.
    return -amount if _SIGNED.match(text) and amount > 0 else amount


def _to_int(value: Any, base: str, tz: Any) -> int:
    n = _number(value)
    if n != n.to_integral_value():
        raise Invalid(f"{n} is not a whole number")
    return int(n)


def _to_float(value: Any, base: str, tz: Any) -> float:
    if isinstance(value, str):
        try:  # plain machine notation first: "1e-3", "2.5"
            f = float(value)
        except ValueError:
            f = float(_number(value))
        if not math.isfinite(f):
            raise Invalid(f"{value[:40]!r} is not a finite number")
        return f
    return float(_number(value))


def _to_decimal(value: Any, base: str, tz: Any) -> int | float:
    n = _number(value)
    # A JSON number: whole amounts stay integers; float's shortest repr keeps "51.77" as is.
    return int(n) if n == n.to_integral_value() else float(n)


def _to_bool(value: Any, base: str, tz: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise Invalid(f"{str(value)[:40]!r} is not true/false, yes/no, 1/0 or on/off")


def _to_datetime(value: Any, base: str, tz: Any) -> str:
    """ISO 8601 in UTC. Naive times are in the source's time zone; numbers are Unix time."""
    if isinstance(value, bool):
        raise Invalid("a boolean is not a time")
    if isinstance(value, (int, float)):
        seconds = float(value) / 1000 if abs(value) > 1e11 else float(value)  # ms since epoch
        try:
            when = datetime.fromtimestamp(seconds, timezone.utc)
        except (OverflowError, OSError, ValueError) as exc:
            raise Invalid(f"{value!r} is not a Unix time") from exc
    else:
        text = scalar_text(value)
        if not text or len(text) > _MAX_TEXT:
            raise Invalid("no time")
        from dateutil import parser as dateparser  # ISO 8601 and the common written forms

        try:
            when = dateparser.isoparse(text)
        except (ValueError, OverflowError):
            if len(text) < 6 or not any(c.isdigit() for c in text):
                raise Invalid(f"{text[:40]!r} is not a date") from None
            try:
                when = dateparser.parse(text)
            except (ValueError, OverflowError) as exc:
                raise Invalid(f"{text[:40]!r} is not a date") from exc
        if when.tzinfo is None:
            when = when.replace(tzinfo=tz)
    return when.astimezone(timezone.utc).isoformat()


def _to_url(value: Any, base: str, tz: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("not a link")
    link: str = value.strip()
    if link.startswith("/") and not link.startswith("//") and "/." not in link:
        # Root-relative, nothing to normalise (most links): scheme and host of the base.
        # (urljoin costs tens of microseconds a call, on every link of every page.)
        origin = _ORIGIN.match(base)
        if origin is not None:
            return origin.group(0) + link
    if (
        link.startswith(_ABSOLUTE)
        and "/." not in link
        and " " not in link
        and urlsplit(link).netloc
    ):
        return link
    joined = urljoin(base, link)
    parts = urlsplit(joined)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Invalid(f"{joined[:60]!r} is not an http(s) URL")
    return joined


def _to_str(value: Any, base: str, tz: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


CONVERTERS: dict[str, Callable[[Any, str, Any], Any]] = {
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "decimal": _to_decimal,
    "bool": _to_bool,
    "datetime": _to_datetime,
    "url": _to_url,
}


def convert(type_: str, value: Any, base_url: str, tz: Any) -> Any:
    """`value` as `type_`; raise Invalid when it does not convert."""
    try:
        return CONVERTERS[type_](value, base_url, tz)
    except Invalid:
        raise
    except (ValueError, ArithmeticError, TypeError, OverflowError) as exc:
        raise Invalid(str(exc)) from exc
