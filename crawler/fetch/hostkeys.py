"""The key a request's host has in the per-host maps (circuit breakers, politeness pacer,
concurrency): a rendered page's third-party hosts are bounded in number.

A page the browser renders loads from hosts no source names (CDNs, analytics, ad servers that
rotate their names): each would otherwise get a breaker (and a `crawler_circuit_state` series),
a pacer slot and a semaphore for the process's whole life. The first `MAX_OTHER_HOSTS` of them
keep entries of their own, as any host: a dead analytics host opens its own breaker while the
CDN's scripts still load, and each keeps its politeness gap. Every further one shares the key
`other` (the name `crawler_requests_total` gives them all): one breaker, one gap, one
semaphore. A cap, not one shared key for all: a shared breaker would let one failing
third-party host fail every page's scripts, and a shared gap would queue a page's every
third-party request one `politeness_delay` apart. A source's own hosts are always their own.
"""

from __future__ import annotations

MAX_OTHER_HOSTS = 64
OTHER = "other"


class HostKeys:
    """Hands out the per-host key of each request's host, the process's third-party ones
    capped at `cap` (shared by all sources, as the maps are)."""

    def __init__(self, cap: int = MAX_OTHER_HOSTS) -> None:
        self.cap = cap
        self._others: set[str] = set()

    def key(self, host: str, own: frozenset[str], *, page: bool) -> str:
        """`host`'s key; `own`: the source's hosts; `page`: a request of a rendered page (a
        crawl's own requests go only to its source's hosts and their redirects)."""
        if not page or host in own or host in self._others:
            return host
        if len(self._others) < self.cap:
            self._others.add(host)
            return host
        return OTHER
