"""The `fetch` section: the HTTP client's limits, politeness and resilience (`retry`,
`circuit`), shared by every source.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from crawler.config import convert as cv
from crawler.config.loader import (
    section,
    setting,
)
from crawler.config.request import proxy_url


@dataclass(frozen=True, kw_only=True)
class RetryConfig:
    """Exponential backoff with jitter for transient failures."""

    attempts: int = setting(
        4, cv.positive_int, "attempts per URL for connection errors, timeouts, 5xx and 429"
    )
    base: float = setting(1.0, cv.positive_duration, "first backoff (exponential, with jitter)")
    max: float = setting(60.0, cv.positive_duration, "longest backoff")
    give_up_after: float = setting(
        300.0, cv.positive_duration, "no wait is started that would end past this bound"
    )
    retry_after_max: float = setting(300.0, cv.duration, "`Retry-After` is honoured up to this")


@dataclass(frozen=True, kw_only=True)
class CircuitConfig:
    """Per-host circuit breaker (counts over a sliding window of calls)."""

    failure_ratio: float = setting(
        0.5, cv.ratio, "the per-host breaker opens at this failure ratio…"
    )
    window: int = setting(20, cv.positive_int, "…over the last `window` calls…")
    min_calls: int = setting(10, cv.positive_int, "…once there were `min_calls`")
    open_for: float = setting(10.0, cv.positive_duration, "fail fast this long, then half-open")
    half_open_calls: int = setting(3, cv.positive_int, "probes while half-open")


@dataclass(frozen=True, kw_only=True)
class FetchConfig:
    """HTTP client limits, politeness and resilience settings."""

    concurrency: int = setting(
        16, cv.positive_int, "requests in flight at once, all sources together"
    )
    per_host_concurrency: int = setting(4, cv.positive_int, "requests in flight to one host")
    connect_timeout: float = setting(10.0, cv.positive_duration, "per request: connecting")
    read_timeout: float = setting(30.0, cv.positive_duration, "per request: between two reads")
    total_timeout: float = setting(
        60.0, cv.positive_duration, "per request, whole (a body dripping one byte at a time)"
    )
    max_response_bytes: int = setting(10 * 2**20, cv.size, "cap on the body *after* decompression")
    max_redirects: int = setting(5, cv.positive_int, "redirects followed per request")
    politeness_delay: float = setting(
        1.0,
        cv.duration,
        "minimum gap between two requests to one host (all sources sharing the host)",
    )
    robots: bool = setting(
        True,
        cv.boolean,
        "honour robots.txt (and its `Crawl-delay`); a source can opt out with `robots: false`",
    )
    robots_ttl: float = setting(
        3600.0,
        cv.positive_duration,
        "how long a robots.txt is cached (one failing with 5xx/429/connection errors disallows "
        "the host for 10 minutes, or the last good copy is used; a 4xx allows all)",
    )
    # A robots.txt Crawl-delay above this is cut to it: a mistaken or hostile value (hours)
    # must not park a source for good; real sites ask for 1-30 s.
    crawl_delay_max: float = setting(
        60.0,
        cv.duration,
        "a site's `Crawl-delay` above this is cut to it (a hostile value cannot stall a "
        "source); `0` ignores `Crawl-delay`",
    )
    conditional_get: bool = setting(
        True,
        cv.boolean,
        "send `If-None-Match`/`If-Modified-Since`; a 304 or an unchanged body skips "
        "extraction (ETag, Last-Modified and a 16-byte body hash per URL in "
        "`<state_dir>/http_state.sqlite`, recorded once the page's records are committed)",
    )
    allow_private_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = setting(
        (),
        cv.networks,
        "networks every source may reach although they are not public (`[192.168.1.0/24]`); "
        "for one source, `allow_private: true` there",
        shown="none",
    )
    proxy: str | None = setting(
        None,
        proxy_url,
        "an HTTP(S) proxy for every request (`http://user:pass@proxy:3128`; the password is "
        "redacted from logs); a source's `request.proxy` wins; without either the standard "
        "`HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` variables apply",
    )
    retry: RetryConfig = section(RetryConfig, "retries of transient failures")
    circuit: CircuitConfig = section(CircuitConfig, "the per-host circuit breaker")
