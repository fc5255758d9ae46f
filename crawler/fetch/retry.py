"""Which fetch failures are worth another attempt, which count against a host's circuit
breaker, and how long to wait before the next attempt (backoff, Retry-After, the give-up time).
The fetcher's step 2 (crawler/fetch/client.py) drives them.
"""

from __future__ import annotations

from crawler.backoff import Backoff
from crawler.config.fetch import RetryConfig
from crawler.errors import ErrorKind, FetchError

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
