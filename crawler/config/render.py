"""The `browser:` section and a source's `render:` section (issue 26): where pages are rendered
and how one source's pages are.

Declared here, below `crawler.render` (which reads them) and apart from the source's other
keys, so the configuration never imports anything browser-related: a source without `render`
loads, checks and runs with no CDP client in the process.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from crawler.config import convert as cv
from crawler.config.loader import secret, setting

# CDP's resource types, as `block` names them (lower case).
RESOURCE_TYPES = frozenset(
    {
        "document",
        "stylesheet",
        "image",
        "media",
        "font",
        "script",
        "texttrack",
        "xhr",
        "fetch",
        "prefetch",
        "eventsource",
        "manifest",
        "ping",
        "other",
    }
)


def endpoint(value: Any) -> str:
    """A CDP endpoint: `http(s)://host:port` or a `ws(s)://…/devtools/browser/…` URL."""
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s):// or ws(s):// URL")
    if "@" in parts.netloc:
        raise ValueError(
            "must not contain `user:password@`, which would land in logs: use `basic_user` "
            "with a password_env or password_file"
        )
    return str(value)


def crosses_in_clear(url: str) -> bool:
    """Whether a password sent to `url` would cross a network unencrypted: plain `http`/`ws`
    to a host other than this machine's loopback (`localhost`, 127.0.0.0/8, ::1)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "ws"):
        return False
    host = (parts.hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def resource_types(value: Any) -> tuple[str, ...]:
    """A list of CDP resource types (`image`, `font`, `media`, `stylesheet`, …)."""
    names = tuple(t.lower() for t in cv.string_list(value))
    unknown = sorted(set(names) - RESOURCE_TYPES)
    if unknown:
        raise ValueError(
            f"unknown resource type(s) {', '.join(unknown)}; known: "
            + ", ".join(sorted(RESOURCE_TYPES))
        )
    if "document" in names:
        raise ValueError("`document` cannot be blocked: it is the page")
    return names


def css_selector(value: Any) -> str:
    """A plain CSS selector, as the browser's `querySelector` takes it."""
    text = cv.string(value)
    if text.startswith("xpath:") or "::" in text:
        raise ValueError(
            "a plain CSS selector (the browser's querySelector): no `xpath:`, no `::text`"
        )
    return text


@dataclass(frozen=True, kw_only=True)
class BrowserConfig:
    """Where pages of `render` sources are rendered: one browser per crawler."""

    endpoint: str | None = setting(
        None,
        endpoint,
        "a CDP endpoint: `http(s)://host:port` (its WebSocket URL read from `/json/version` at "
        "every connect, so a restarted browser is found again) or a `ws(s)://…/devtools/"
        "browser/…` URL as given; or `executable`",
    )
    executable: str | None = setting(
        None,
        cv.string,
        "a local Chromium (`/usr/bin/chromium`) started, restarted and reaped by the crawler "
        "(a PC, a Pi 4/5), instead of `endpoint`",
    )
    max_pages: int = setting(2, cv.positive_int, "pages rendering at once, all sources together")
    restart_after: int = setting(
        200,
        cv.positive_int,
        "a local Chromium (`executable`) is restarted after this many pages, between two renders",
    )
    basic_user: str | None = setting(
        None,
        cv.string,
        "basic-auth user, when the endpoint is behind the proxy (with `password_env` or "
        "`password_file`); the endpoint must then be `https://`/`wss://` unless it is loopback",
    )
    password: str | None = secret(
        "the basic-auth password: `password_env` names an environment variable holding it, "
        "`password_file` a file"
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if (self.endpoint is None) == (self.executable is None):
            yield "endpoint", "give exactly one of `endpoint` and `executable`"
        if self.basic_user is not None and self.password is None:
            yield "basic_user", "needs `password_env` or `password_file`"
        if self.basic_user is not None and self.endpoint and crosses_in_clear(self.endpoint):
            yield (
                "endpoint",
                "with `basic_user` the endpoint must be https:// or wss:// (or loopback): the "
                "password would cross the network in clear",
            )
        if self.password is not None and self.basic_user is None:
            yield "password_env", "a password needs `basic_user`"


@dataclass(frozen=True, kw_only=True)
class RenderConfig:
    """A source's pages rendered by the browser, every request through the fetch layer."""

    wait_for: str | None = setting(
        None,
        css_selector,
        "a CSS selector to wait for: the page is read once it matches (best for single-page "
        "apps); else `wait`",
    )
    wait: str = setting(
        "networkidle",
        cv.choice("load", "networkidle"),
        "without `wait_for`: read at the `load` event, or at `networkidle` (no request for "
        "0.5 s: after the script's own XHR)",
    )
    timeout: float = setting(
        30.0,
        cv.positive_duration,
        "the whole render, every CDP call included; past it the page fails as `render_timeout`",
    )
    block: tuple[str, ...] = setting(
        ("image", "font", "media"),
        resource_types,
        "resource types never fetched: failed in the page at once, with no request (also "
        "`stylesheet`, `script`, `xhr`, `fetch`, … : CDP's types, lower case)",
        shown="`[image, font, media]`",
    )
    max_requests: int = setting(
        200,
        cv.positive_int,
        "requests one page may have the crawler fetch (its document included); beyond, they "
        "fail in the page as blocked, counted; the rendered DOM is capped by "
        "`fetch.max_response_bytes` (over it: `too_large`)",
    )
