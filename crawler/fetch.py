"""Fetching: one aiohttp session for the process, polite to every host and hard to knock over.

`Fetcher.fetch()` returns a `Page` or raises `FetchError` with an `ErrorKind`; aiohttp's
exceptions never leave this module (translated in `_translate`). Each fetch goes through:

1. the host's circuit breaker (fail fast while it is open, `crawler.breaker`);
2. robots.txt, unless the source opts out (`crawler.robots`);
3. the conditional-GET validators of the URL (`crawler.httpstate`);
4. attempts: per-host concurrency, the per-host politeness gap (`crawler.politeness`; the
   larger of `politeness_delay` and the site's Crawl-delay), the global concurrency limit,
   then the request, bounded in time, redirects and bytes (counted after decompression);
5. retries of transient failures (`RETRYABLE`, plus HTTP 429) with `Backoff`, honouring
   Retry-After on 429 and 503, never waiting past the give-up bound.
"""

from __future__ import annotations

import asyncio
import codecs
import dataclasses
import email.utils
import hashlib
import logging
import re
import ssl
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timezone
from types import TracebackType
from urllib.parse import urlsplit

import aiohttp
import yarl

from crawler.backoff import Backoff
from crawler.breaker import Breakers, CircuitBreaker
from crawler.config import Config, SourceConfig
from crawler.errors import ErrorKind, FetchError
from crawler.httpstate import HttpState, Validators
from crawler.metrics import Metrics, status_class
from crawler.politeness import HostPacer
from crawler.robots import MAX_BYTES as ROBOTS_MAX_BYTES
from crawler.robots import RobotsCache

log = logging.getLogger("crawler.fetch")

_CHUNK = 64 * 1024

# Failures worth another attempt: the host or the network may be fine a moment later. A 4xx,
# a body over the cap or of the wrong type will be the same next time. (429 is a 4xx that is
# retried, after the wait the server asks for.)
RETRYABLE = frozenset({ErrorKind.TIMEOUT, ErrorKind.CONNECT, ErrorKind.DNS, ErrorKind.HTTP_5XX})
# Failures that say the *host* is unwell, counted by its circuit breaker. A 404 or a page of
# the wrong shape is the page's problem; the host answered fine.
HOST_FAILURES = RETRYABLE | {ErrorKind.TLS}

# Content types each parser accepts. JSON APIs are often served as text or JavaScript.
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_JSON_TYPES = frozenset(
    {"application/json", "text/json", "text/plain", "text/javascript", "application/javascript"}
)
_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:+-]{1,40})""", re.I
)
_SNIFF_BYTES = 4096


@dataclass(frozen=True)
class Page:
    """A fetched response body (decompressed, at most the configured cap)."""

    url: str
    status: int
    body: bytes
    content_type: str
    charset: str | None
    duration: float
    not_modified: bool = False
    attempts: int = 1
    etag: str | None = None
    last_modified: str | None = None
    # (old, new) validators, recorded by Fetcher.commit() once the page's records are safe.
    validators: tuple[Validators | None, Validators] | None = None


def _translate(exc: BaseException) -> FetchError:
    """Map aiohttp/asyncio/ssl exceptions onto our error kinds."""
    if isinstance(exc, FetchError):
        return exc
    if isinstance(exc, asyncio.TimeoutError):
        return FetchError(ErrorKind.TIMEOUT, "timed out")
    if isinstance(exc, aiohttp.TooManyRedirects):
        return FetchError(ErrorKind.REDIRECT, "too many redirects")
    if isinstance(
        exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError, ssl.SSLError)
    ):
        return FetchError(ErrorKind.TLS, str(exc) or "TLS error")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return FetchError(ErrorKind.DNS, str(exc) or "DNS lookup failed")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return FetchError(ErrorKind.CONNECT, str(exc) or "cannot connect")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return FetchError(ErrorKind.CONNECT, f"body cut short: {exc}")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError)):
        return FetchError(ErrorKind.CONNECT, str(exc) or "connection lost")
    if isinstance(exc, aiohttp.InvalidURL):
        return FetchError(ErrorKind.BAD_CONTENT, f"invalid URL: {exc}")
    if isinstance(exc, aiohttp.ClientResponseError):
        return FetchError(ErrorKind.BAD_CONTENT, f"bad response: {exc.message}")
    if isinstance(exc, aiohttp.ClientError):
        return FetchError(ErrorKind.CONNECT, str(exc) or type(exc).__name__)
    raise exc


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        now = time.time() if now is None else now
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _valid_charset(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def choose_charset(header_charset: str | None, body: bytes, parser: str) -> str:
    """The body's charset: the header's, else a BOM or <meta> (HTML), else UTF-8.

    Never None: lxml, left to guess, reads a page without <meta> as Latin-1, and most of the
    web is UTF-8. Bytes invalid in the chosen charset become U+FFFD in the parsers.
    """
    found = _valid_charset(header_charset)
    if found:
        return found
    if body.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if parser == "html":
        m = _META_CHARSET.search(body[:_SNIFF_BYTES])
        if m:
            found = _valid_charset(m.group(1).decode("ascii"))
            if found:
                return found
    return "utf-8"


def check_content_type(parser: str, declared: bool, ctype: str) -> None:
    """Raise BAD_CONTENT unless the response's type suits the source's parser."""
    if not declared:
        return  # nothing declared (aiohttp then says octet-stream): let the parser judge
    ctype = ctype.lower()
    if parser == "json":
        ok = ctype in _JSON_TYPES or ctype.endswith("+json")
    else:
        ok = ctype in _HTML_TYPES
    if not ok:
        raise FetchError(ErrorKind.BAD_CONTENT, f"content type {ctype!r} is not {parser}")


class Fetcher:
    """The process's HTTP client; use as an async context manager."""

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.config, self.fc, self.metrics = config, config.fetch, metrics
        self._session: aiohttp.ClientSession | None = None
        self._global = asyncio.Semaphore(self.fc.concurrency)
        self._per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self.fc.per_host_concurrency)
        )
        self.pacer = HostPacer()
        self.breakers = Breakers(self.fc.circuit, metrics)
        self.robots = RobotsCache(
            self._fetch_robots, config.user_agent, self.fc.robots_ttl, metrics
        )
        self.state: HttpState | None = None

    async def __aenter__(self) -> Fetcher:
        fc = self.fc
        timeout = aiohttp.ClientTimeout(
            total=fc.total_timeout, sock_connect=fc.connect_timeout, sock_read=fc.read_timeout
        )
        connector = aiohttp.TCPConnector(
            limit=fc.concurrency,
            limit_per_host=fc.per_host_concurrency,
            ttl_dns_cache=300,
            enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            connector=connector,
            headers={"User-Agent": self.config.user_agent},
            max_line_size=16384,
            max_field_size=16384,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        if fc.conditional_get:
            self.state = HttpState(
                self.config.state_dir / "http_state.sqlite",
                frozenset(s.name for s in self.config.sources),
            )
            await self.state.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.breakers.close()
        try:
            if self.state is not None:
                await self.state.close()
                self.state = None
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Fetcher used outside `async with`")
        return self._session

    # -- the fetch -----------------------------------------------------------------------------

    async def fetch(self, source: SourceConfig, url: str) -> Page:
        """Fetch `url` for `source`, with retries; raise FetchError on any failure."""
        parts = urlsplit(url)
        host = parts.netloc  # as SourceConfig.hosts has it, so metric series line up
        breaker = self.breakers.get(host)
        breaker.check()
        delay = self.fc.politeness_delay
        if self.fc.robots and source.robots:
            policy = await self.robots.policy(f"{parts.scheme}://{host}")
            if not policy.allows(url, self.config.user_agent):
                if policy.error_kind is not None:  # robots.txt unreadable: the host's trouble
                    raise FetchError(policy.error_kind, policy.reason)
                raise FetchError(ErrorKind.ROBOTS_DENIED, "disallowed by robots.txt")
            crawl_delay = policy.crawl_delay(self.config.user_agent)
            if crawl_delay:
                delay = max(delay, min(crawl_delay, self.fc.crawl_delay_max))
        old = await self.state.get(source.name, url) if self.state is not None else None
        headers = old.headers() if old is not None else {}
        page = await self._with_retries(source, host, url, headers, delay, breaker)
        if self.state is not None:
            page = self._remember(source.name, url, old, page)
        return page

    def commit(self, source: SourceConfig, url: str, page: Page) -> None:
        """Record the page's validators; call only once its records are committed.

        Until then a crash, a parse error or a refused batch leaves the old validators, so the
        next fetch is a full one that gets extracted again: "not modified" can never hide
        records that were not stored.
        """
        if self.state is not None and page.validators is not None:
            old, new = page.validators
            self.state.put(source.name, url, old, new)

    def _remember(self, source: str, url: str, old: Validators | None, page: Page) -> Page:
        assert self.state is not None
        if page.status == 304:
            if old is None:
                return page
            new = Validators(
                page.etag or old.etag, page.last_modified or old.last_modified, old.body_hash
            )
        else:
            digest = hashlib.blake2b(page.body, digest_size=16).digest()
            new = Validators(page.etag, page.last_modified, digest)
            if old is not None and old.body_hash == digest:
                page = dataclasses.replace(page, body=b"", not_modified=True)
        return dataclasses.replace(page, validators=(old, new))

    async def _with_retries(
        self,
        source: SourceConfig,
        host: str,
        url: str,
        headers: dict[str, str],
        delay: float,
        breaker: CircuitBreaker,
    ) -> Page:
        rc = self.fc.retry
        backoff = Backoff(base=rc.base, cap=rc.max, give_up_after=rc.give_up_after)
        attempt = 0
        while True:
            attempt += 1
            try:
                page = await self._attempt(source, host, url, headers, delay, breaker)
            except FetchError as exc:
                if exc.kind is ErrorKind.CIRCUIT_OPEN:
                    raise  # opened by other calls meanwhile: no request was made
                wait = self._retry_wait(exc, attempt, backoff)
                log.warning(
                    "fetch attempt failed, retrying"
                    if wait is not None
                    else "fetch attempt failed",
                    extra={
                        "source": source.name,
                        "url": url,
                        "attempt": attempt,
                        "error_kind": exc.kind.value,
                        "status": exc.status,
                        "error": str(exc),
                        "retry_in_ms": round(wait * 1000) if wait is not None else None,
                    },
                )
                if wait is None:
                    raise
                self.metrics.fetch_retries.labels(source.name, exc.kind.value).inc()
                await asyncio.sleep(wait)
                continue
            if attempt > 1:
                page = dataclasses.replace(page, attempts=attempt)
            return page

    def _retry_wait(self, exc: FetchError, attempt: int, backoff: Backoff) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        rc = self.fc.retry
        retryable = exc.kind in RETRYABLE or exc.status == 429
        if not retryable or attempt >= rc.attempts:
            return None
        wait = backoff.next_delay()
        if exc.retry_after is not None and exc.status in (429, 503):
            wait = max(wait, min(exc.retry_after, rc.retry_after_max))
        if backoff.expired(wait):
            return None
        return wait

    async def _attempt(
        self,
        source: SourceConfig,
        host: str,
        url: str,
        headers: dict[str, str],
        delay: float,
        breaker: CircuitBreaker,
    ) -> Page:
        async with self._per_host[host]:
            await self.pacer.wait(host, delay)
            permit = breaker.acquire()
            try:
                async with self._global:
                    page = await self._request(source, host, url, headers)
            except FetchError as exc:
                breaker.record(permit, exc.kind in HOST_FAILURES or exc.status == 429)
                raise
            except BaseException:
                breaker.release(permit)
                raise
            breaker.record(permit, False)
            return page

    async def _request(
        self, source: SourceConfig, host: str, url: str, headers: dict[str, str]
    ) -> Page:
        m = self.metrics
        status: int | None = None
        body = b""
        started = time.monotonic()
        m.in_flight.inc()
        try:
            async with await self._get_following_redirects(source, url, headers) as resp:
                status = resp.status
                _raise_for_status(resp)
                if status != 304:
                    declared = "Content-Type" in resp.headers
                    check_content_type(source.parser, declared, resp.content_type)
                    body = await self._read_capped(resp, self.fc.max_response_bytes)
                page = Page(
                    url=url,
                    status=status,
                    body=body,
                    content_type=resp.content_type or "",
                    charset=choose_charset(resp.charset, body, source.parser),
                    duration=time.monotonic() - started,
                    not_modified=status == 304,
                    etag=resp.headers.get("ETag"),
                    last_modified=resp.headers.get("Last-Modified"),
                )
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            error = _translate(exc)
            raise error from (exc if error is not exc else None)
        finally:
            m.in_flight.dec()
            m.requests.labels(source.name, host, status_class(status)).inc()
            m.request_duration.labels(source.name).observe(time.monotonic() - started)
            m.response_bytes.labels(source.name).inc(len(body))
        return page

    async def _get_following_redirects(
        self, source: SourceConfig, url: str, headers: dict[str, str]
    ) -> aiohttp.ClientResponse:
        """GET `url`, following redirects by hand so every hop is checked like a first request:
        its scheme, and robots.txt of the host it leads to (aiohttp would follow blindly).

        As aiohttp counts them: the `max_redirects`-th redirect response is an error. The
        conditional headers belong to `url` and are not sent to other URLs.
        """
        current, hops = url, 0
        while True:
            resp = await self.session.get(
                current, headers=headers if current == url else None, allow_redirects=False
            )
            if resp.status not in _REDIRECTS or "Location" not in resp.headers:
                return resp
            hops += 1
            target = resp.url.join(yarl.URL(resp.headers["Location"]))
            resp.release()
            if hops >= self.fc.max_redirects:
                raise FetchError(ErrorKind.REDIRECT, f"more than {hops - 1} redirects")
            if target.scheme not in ("http", "https"):
                raise FetchError(ErrorKind.REDIRECT, f"redirect to a {target.scheme!r} URL")
            if self.fc.robots and source.robots:
                policy = await self.robots.policy(f"{target.scheme}://{target.raw_authority}")
                if not policy.allows(str(target), self.config.user_agent):
                    raise FetchError(
                        policy.error_kind or ErrorKind.ROBOTS_DENIED,
                        f"redirected to {target}: {policy.reason or 'disallowed by robots.txt'}",
                    )
            current = str(target)

    async def _fetch_robots(self, url: str) -> tuple[int, bytes]:
        """GET a robots.txt: same timeouts and politeness, body truncated at its limit."""
        m = self.metrics
        host = urlsplit(url).netloc
        status: int | None = None
        started = time.monotonic()
        async with self._per_host[host]:
            await self.pacer.wait(host, self.fc.politeness_delay)
            try:
                async with self.session.get(
                    url, allow_redirects=True, max_redirects=self.fc.max_redirects
                ) as resp:
                    status = resp.status
                    if not 200 <= status < 300:
                        return status, b""
                    return status, await self._read_capped(resp, ROBOTS_MAX_BYTES, truncate=True)
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                error = _translate(exc)
                raise error from (exc if error is not exc else None)
            finally:
                m.requests.labels("robots", host, status_class(status)).inc()
                m.request_duration.labels("robots").observe(time.monotonic() - started)

    async def _read_capped(
        self, resp: aiohttp.ClientResponse, cap: int, truncate: bool = False
    ) -> bytes:
        """Read the body, counting bytes after decompression, and stop at the cap.

        aiohttp decompresses in bounded steps as we read (since 3.13.3), so a gzip bomb is
        never expanded beyond what we have read plus one step.
        """
        if (
            not truncate
            and resp.content_length is not None
            and resp.content_length > cap
            and not resp.headers.get("Content-Encoding")
        ):
            raise FetchError(
                ErrorKind.TOO_LARGE,
                f"Content-Length {resp.content_length} over the cap of {cap} bytes",
            )
        buf = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            if len(buf) + len(chunk) > cap:
                if truncate:
                    buf += chunk[: cap - len(buf)]
                    break
                raise FetchError(ErrorKind.TOO_LARGE, f"body over the cap of {cap} bytes")
            buf += chunk
        return bytes(buf)


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _raise_for_status(resp: aiohttp.ClientResponse) -> None:
    status = resp.status
    if status >= 500:
        raise FetchError(
            ErrorKind.HTTP_5XX,
            f"HTTP {status}",
            status=status,
            retry_after=retry_after(resp.headers.get("Retry-After")),
        )
    if status >= 400:
        raise FetchError(
            ErrorKind.HTTP_4XX,
            f"HTTP {status}",
            status=status,
            retry_after=retry_after(resp.headers.get("Retry-After")),
        )
