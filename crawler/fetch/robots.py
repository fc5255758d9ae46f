"""robots.txt: fetched once per host and TTL, parsed with Protego, asked before every fetch.

How a robots.txt fetch ends decides the policy (the convention of RFC 9309 and Google):

* 2xx: the file's rules (outcome `ok`), kept for `robots_ttl`.
* 4xx other than 429 (no file, or no access to it): everything is allowed (`missing`).
* 429, 5xx, timeout, connection failure (`error`): the site cannot say what it allows, so it is
  treated as *disallowing everything* for `ERROR_TTL` (at most `robots_ttl`); we would rather
  skip a run than crawl against rules we could not read. If an earlier copy of the file is
  known, it is used instead, as it is the best knowledge of the rules there is.

Only the first `MAX_BYTES` of the file are parsed (Google's limit is 500 KiB), so a huge or
endless robots.txt cannot exhaust memory. Concurrent callers for one host share one fetch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from crawler.errors import ErrorKind, FetchError
from crawler.observability.metrics import Metrics

log = logging.getLogger("crawler.robots")

MAX_BYTES = 512 * 1024
# How long an unreadable robots.txt keeps its host disallowed before the next try: short,
# so a site that was down for a moment is crawled again soon, long enough not to hammer it.
ERROR_TTL = 600.0

# Fetches `url` and returns (status, body); raises FetchError on network failures.
FetchText = Callable[[str], Awaitable[tuple[int, bytes]]]


@dataclass(frozen=True)
class RobotsPolicy:
    """What one host's robots.txt allows, and until when this answer holds."""

    origin: str
    parser: Any  # Protego, or None: allow everything (or nothing, with `deny_all`)
    expires: float
    deny_all: bool = False
    reason: str = ""
    # Why robots.txt could not be read (with deny_all): the host's real trouble, reported as
    # the fetch's error kind so a site that is down does not look like a polite refusal.
    error_kind: ErrorKind | None = None

    def allows(self, url: str, user_agent: str) -> bool:
        if self.deny_all:
            return False
        if self.parser is None:
            return True
        return bool(self.parser.can_fetch(url, user_agent))

    def sitemaps(self) -> list[str]:
        """The URLs of the file's `Sitemap:` lines (for `sitemap: {url: robots}`)."""
        if self.parser is None:
            return []
        return [str(u) for u in self.parser.sitemaps]

    def crawl_delay(self, user_agent: str) -> float | None:
        """Seconds between requests asked for by Crawl-delay (or Request-rate), if any."""
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(user_agent)
        rate = self.parser.request_rate(user_agent)
        if rate is not None and rate.requests > 0:
            per_request = rate.seconds / rate.requests
            delay = per_request if delay is None else max(delay, per_request)
        return float(delay) if delay is not None else None


class RobotsCache:
    """robots.txt policies per origin (scheme://host:port), refreshed after `ttl`."""

    def __init__(
        self,
        fetch_text: FetchText,
        user_agent: str,
        ttl: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch_text, self.user_agent, self.ttl = fetch_text, user_agent, ttl
        self.metrics, self._clock = metrics, clock
        self._policies: dict[str, RobotsPolicy] = {}
        self._good: dict[str, RobotsPolicy] = {}  # last policy read from an actual file
        self._locks: dict[str, asyncio.Lock] = {}

    async def policy(self, origin: str) -> RobotsPolicy:
        current = self._policies.get(origin)
        if current is not None and current.expires > self._clock():
            return current
        lock = self._locks.setdefault(origin, asyncio.Lock())
        async with lock:
            current = self._policies.get(origin)
            if current is not None and current.expires > self._clock():
                return current  # another caller refreshed it while we waited
            current = await self._load(origin)
            self._policies[origin] = current
            return current

    async def _load(self, origin: str) -> RobotsPolicy:
        url = origin + "/robots.txt"
        now = self._clock()
        try:
            status, body = await self._fetch_text(url)
        except FetchError as exc:
            return self._unreadable(origin, now, exc.kind, exc.status, str(exc))
        if 200 <= status < 300:
            self.metrics.robots_fetches.labels("ok").inc()
            text = body[:MAX_BYTES].decode("utf-8", errors="replace")
            from protego import Protego  # here: a crawler with `robots: false` does without

            policy = RobotsPolicy(origin, Protego.parse(text), now + self.ttl, reason="ok")
            self._good[origin] = policy
            log.debug("robots.txt loaded", extra={"url": url, "status": status})
            return policy
        if 400 <= status < 500 and status != 429:
            self.metrics.robots_fetches.labels("missing").inc()
            log.debug("no robots.txt: everything allowed", extra={"url": url, "status": status})
            return RobotsPolicy(origin, None, now + self.ttl, reason=f"HTTP {status}")
        kind = ErrorKind.HTTP_5XX if status >= 500 else ErrorKind.HTTP_4XX
        return self._unreadable(origin, now, kind, status, f"HTTP {status}")

    def _unreadable(
        self, origin: str, now: float, kind: ErrorKind, status: int | None, why: str
    ) -> RobotsPolicy:
        self.metrics.robots_fetches.labels("error").inc()
        expires = now + min(ERROR_TTL, self.ttl)
        stale = self._good.get(origin)
        log.warning(
            "robots.txt unavailable",
            extra={
                "fallback": "last copy read" if stale else "host disallowed",
                "url": origin + "/robots.txt",
                "error_kind": kind.value,
                "status": status,
                "error": why,
                "retry_in_s": round(expires - now),
            },
        )
        if stale is not None:
            return RobotsPolicy(origin, stale.parser, expires, reason="stale copy")
        return RobotsPolicy(
            origin,
            None,
            expires,
            deny_all=True,
            reason=f"robots.txt unavailable ({why})",
            error_kind=kind,
        )
