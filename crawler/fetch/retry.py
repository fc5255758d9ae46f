"""Which fetch failures are worth another attempt, which count against a host's circuit
breaker, how long to wait before the next attempt (backoff, Retry-After, the give-up time), and
how loudly a failed attempt is logged. The fetcher's step 2 (crawler/fetch/client.py) drives them.
"""

from __future__ import annotations

import logging

from crawler.backoff import Backoff
from crawler.config.fetch import RetryConfig
from crawler.errors import ErrorKind, FetchError
from crawler.fetch.request import origin

# Failures worth another attempt: the host or the network may be fine a moment later. A 4xx,
# a body over the cap or of the wrong type will be the same next time. (429 is a 4xx that is
# retried, after the wait the server asks for.)
RETRYABLE = frozenset({ErrorKind.TIMEOUT, ErrorKind.CONNECT, ErrorKind.DNS, ErrorKind.HTTP_5XX})
# Failures that say the *host* is unwell, counted by its circuit breaker. A 404 or a page of
# the wrong shape is the page's problem; the host answered fine.
HOST_FAILURES = RETRYABLE | {ErrorKind.TLS}


def retry_wait(rc: RetryConfig, exc: FetchError, attempt: int, backoff: Backoff) -> float | None:
    """Seconds to wait before the next attempt, or None to give up now."""
    retryable = exc.kind in RETRYABLE or exc.status == 429
    if not retryable or attempt >= rc.attempts:
        return None
    wait = backoff.next_delay()
    if exc.retry_after is not None and exc.status in (429, 503):
        wait = max(wait, min(exc.retry_after, rc.retry_after_max))
    if backoff.expired(wait):
        return None
    return wait


def attempt_level(url: str, home: str | None) -> int:
    """WARNING for a failed attempt, DEBUG for a rendered page's request to another origin:
    an ad or tracker that fails is the page's business, and a page may make hundreds."""
    if home is not None and origin(url) != home:
        return logging.DEBUG
    return logging.WARNING
