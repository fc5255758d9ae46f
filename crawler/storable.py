"""Storable values: what extraction hands on can be stored by every backend, always.

Two kinds of text that JSON can carry (`"\\u0000"`, `"\\ud800"`) no store takes: PostgreSQL's
`jsonb` and `text` refuse NUL, and a lone UTF-16 surrogate cannot be encoded as UTF-8 at all
(psycopg and SQLite fail on the whole batch). So, once per record where it is finalised:

* NUL (U+0000) is removed;
* a lone surrogate (U+D800..U+DFFF not forming a pair) becomes U+FFFD, the replacement character
  (a high and low surrogate that do form a pair become the character they encode).

This applies to keys of nested objects too, and happens before the record's key is computed, so
a NUL in a key field gives the same key as the value without it. HTML needs none of this (lxml
already replaces both) but goes through the same check, which costs about a microsecond per
record on the happy path: ASCII strings are checked with one `in`, others with one regex search.
"""

from __future__ import annotations

import re
from typing import Any

_BAD = re.compile("[\x00\ud800-\udfff]").search


def _ok(text: str) -> bool:
    return "\x00" not in text if text.isascii() else _BAD(text) is None


def clean_text(text: str) -> str:
    """`text` without NUL and with lone surrogates replaced by U+FFFD."""
    if _ok(text):
        return text
    text = text.replace("\x00", "")
    # Through UTF-16 with surrogatepass: a valid pair is joined, a lone half is replaced.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def storable(value: Any) -> Any:
    """`value` (JSON-like: str, list, dict, scalars) with every string made storable."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value


def storable_record(data: dict[str, Any]) -> dict[str, Any]:
    """The record made storable: `data` itself, changed in place, unless a field name needs
    cleaning too (then a new dict)."""
    for name, value in data.items():
        if not _ok(name):
            return storable(data)  # type: ignore[no-any-return]
        if value.__class__ is str:  # the common case first, without a call
            if not _ok(value):
                data[name] = clean_text(value)
        elif value is not None:
            data[name] = storable(value)
    return data
