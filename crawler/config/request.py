"""A source's `request:` section: method, body, headers (some of them secret), auth, proxy,
declared once (`RequestConfig`, `AuthConfig`), with the converters of its values and the
`headers_file` reader (`read_headers_file`), whose errors name the line, never its text.

What one run sends is prepared from it in crawler/fetch/request.py.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from crawler.config import convert as cv
from crawler.config.loader import section, setting
from crawler.errors import SecretUnavailable

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
BODILESS = frozenset({"GET", "HEAD"})
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (RFC 9110 token)
_HEADER_FILE_MAX = 64 * 1024


# --------------------------------------------------------------------------- configuration


def header_map(value: Any) -> tuple[tuple[str, str], ...]:
    """Configured headers, checked: names are tokens, values hold no line breaks."""
    if not isinstance(value, Mapping):
        raise ValueError("must be a mapping of header names to values")
    out = []
    for name, raw in value.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValueError(f"{name!r} is not a header name")
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ValueError(f"the value of {name} must be text")
        text = str(raw)
        if "\r" in text or "\n" in text:
            raise ValueError(f"the value of {name} must be one line")
        out.append((name, text))
    return tuple(out)


def form_map(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise ValueError("must be a mapping of form field names to values")
    return tuple((str(k), "" if v is None else str(v)) for k, v in value.items())


def json_value(value: Any) -> str:
    """A JSON body, kept as its compact text (frozen, hashable, sent as is)."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"is not JSON: {exc}") from exc


def method(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in METHODS:
        raise ValueError(f"must be one of {', '.join(METHODS)}")
    return value.upper()


def proxy_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be an http:// proxy URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// (or https://) proxy URL such as http://proxy:3128")
    return value


@dataclass(frozen=True, kw_only=True)
class AuthConfig:
    """Credentials sent with every request of the source: a bearer token or HTTP Basic."""

    bearer_env: str | None = setting(
        None, cv.string, "environment variable holding a bearer token (`Authorization: Bearer …`)"
    )
    bearer_file: Path | None = setting(
        None, cv.path, "file holding a bearer token, re-read every run (a rotating token)"
    )
    basic_user: str | None = setting(
        None, cv.string, "HTTP Basic user name, with `password_env` or `password_file`"
    )
    password_env: str | None = setting(
        None, cv.string, "environment variable holding the Basic password"
    )
    password_file: Path | None = setting(
        None, cv.path, "file holding the Basic password, re-read every run"
    )

    def check(self) -> Iterable[tuple[str, str]]:
        bearer = [k for k in ("bearer_env", "bearer_file") if getattr(self, k) is not None]
        password = [k for k in ("password_env", "password_file") if getattr(self, k) is not None]
        if len(bearer) > 1:
            yield "bearer_file", "use bearer_env or bearer_file, not both"
        if len(password) > 1:
            yield "password_file", "use password_env or password_file, not both"
        if bearer and (self.basic_user is not None or password):
            yield "basic_user", "use a bearer token or basic_user + password, not both"
        elif not bearer and self.basic_user is None:
            yield "bearer_env", "give bearer_env, bearer_file, or basic_user with a password"
        elif self.basic_user is not None and not password:
            yield "password_env", "basic_user needs password_env or password_file"
        for key in ("bearer_env", "bearer_file", "password_env", "password_file"):
            if (problem := _unreadable(getattr(self, key))) is not None:
                yield key, problem


@dataclass(frozen=True, kw_only=True)
class RequestConfig:
    """How a source's URLs are requested (all optional: a plain GET by default)."""

    method: str = setting(
        "GET",
        method,
        "`GET`, `POST`, `PUT`, `PATCH`, `DELETE` or `HEAD`; part of the request's identity",
    )
    json: str | None = setting(
        None,
        json_value,
        "a JSON body (any YAML value), sent with `Content-Type: application/json`",
    )
    form: tuple[tuple[str, str], ...] | None = setting(
        None, form_map, "a form body (a mapping), sent URL-encoded"
    )
    body: str | None = setting(None, cv.string, "a raw body, sent as written (UTF-8)")
    headers: tuple[tuple[str, str], ...] = setting(
        (),
        header_map,
        "headers sent with every request of the source (not secret: logged in DEBUG)",
    )
    headers_file: Path | None = setting(
        None,
        cv.path,
        "a file of `Name: value` lines (`#` comments), re-read at the start of every run "
        "(expiring cookies, tokens); secret: never logged, sent only to the URL's own origin",
    )
    auth: AuthConfig | None = section(
        AuthConfig, "a bearer token or HTTP Basic credentials (below)", optional=True
    )
    proxy: str | None = setting(
        None, proxy_url, "an HTTP(S) proxy for this source, instead of `fetch.proxy`"
    )

    def check(self) -> Iterable[tuple[str, str]]:
        bodies = [k for k in ("json", "form", "body") if getattr(self, k) is not None]
        if len(bodies) > 1:
            yield bodies[1], "use one of json, form or body"
        if bodies and self.method in BODILESS:
            yield bodies[0], f"a request body needs a method such as POST, not {self.method}"
        if (problem := _unreadable(self.headers_file)) is not None:
            yield "headers_file", problem
        elif self.headers_file is not None:
            try:
                read_headers_file(self.headers_file)
            except SecretUnavailable as exc:
                yield "headers_file", str(exc)


def _unreadable(ref: str | Path | None) -> str | None:
    """Why a secret reference cannot be read now (never its value), or None."""
    if ref is None:
        return None
    if isinstance(ref, Path):
        try:
            with ref.open("rb"):
                pass
        except OSError as exc:
            return f"cannot read {ref}: {exc.strerror}"
        return None
    if ref not in os.environ:
        return f"environment variable {ref} is not set"
    return None


def read_headers_file(path: Path) -> dict[str, str]:
    """`Name: value` lines; blank lines and `#` comments are skipped. Errors name the line
    number, never its text (it may hold a secret)."""
    try:
        with path.open("rb") as f:
            raw = f.read(_HEADER_FILE_MAX + 1)
    except OSError as exc:
        raise SecretUnavailable(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > _HEADER_FILE_MAX:
        raise SecretUnavailable(f"{path} is over {_HEADER_FILE_MAX} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretUnavailable(f"{path} is not UTF-8 text") from None
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name.strip()):
            raise SecretUnavailable(f"{path}:{number}: not a `Name: value` line")
        out[name.strip()] = value.strip()
    return out
