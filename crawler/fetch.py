"""Fetching: one aiohttp session for the process, bounded in concurrency, time and bytes.

`Fetcher.fetch()` returns a `Page` or raises `FetchError` with an `ErrorKind`; aiohttp's
exceptions never leave this module (translated in `_translate`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import defaultdict
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

import aiohttp

from crawler.config import Config, SourceConfig
from crawler.errors import ErrorKind, FetchError
from crawler.metrics import Metrics, status_class

log = logging.getLogger("crawler.fetch")

_CHUNK = 64 * 1024


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


class Fetcher:
    """The process's HTTP client; use as an async context manager."""

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.config, self.fc, self.metrics = config, config.fetch, metrics
        self._session: aiohttp.ClientSession | None = None
        self._global = asyncio.Semaphore(self.fc.concurrency)
        self._per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self.fc.per_host_concurrency)
        )

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
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Fetcher used outside `async with`")
        return self._session

    async def fetch(self, source: SourceConfig, url: str) -> Page:
        """Fetch `url` for `source` once; raise FetchError on any failure."""
        host = urlsplit(url).netloc
        async with self._global, self._per_host[host]:
            return await self._request(source.name, host, url, {})

    async def _request(self, source: str, host: str, url: str, headers: dict[str, str]) -> Page:
        m = self.metrics
        status: int | None = None
        started = time.monotonic()
        m.in_flight.inc()
        try:
            async with self.session.get(
                url, headers=headers, allow_redirects=True, max_redirects=self.fc.max_redirects
            ) as resp:
                status = resp.status
                if status == 304:
                    body = b""
                else:
                    body = await self._read_capped(resp)
                duration = time.monotonic() - started
                page = Page(
                    url=url,
                    status=status,
                    body=body,
                    content_type=resp.content_type or "",
                    charset=resp.charset,
                    duration=duration,
                    not_modified=status == 304,
                )
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            error = _translate(exc)
            raise error from (exc if error is not exc else None)
        finally:
            m.in_flight.dec()
            m.requests.labels(source, host, status_class(status)).inc()
            m.request_duration.labels(source).observe(time.monotonic() - started)
        m.response_bytes.labels(source).inc(len(body))
        if status >= 500:
            raise FetchError(ErrorKind.HTTP_5XX, f"HTTP {status}", status=status)
        if status >= 400:
            raise FetchError(ErrorKind.HTTP_4XX, f"HTTP {status}", status=status)
        return page

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        """Read the body, counting bytes after decompression, and stop at the cap."""
        cap = self.fc.max_response_bytes
        if (
            resp.content_length is not None
            and resp.content_length > cap
            and not resp.headers.get("Content-Encoding")
        ):
            raise FetchError(
                ErrorKind.TOO_LARGE,
                f"Content-Length {resp.content_length} over the cap of {cap} bytes",
            )
        chunks: list[bytes] = []
        total = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            total += len(chunk)
            if total > cap:
                raise FetchError(ErrorKind.TOO_LARGE, f"body over the cap of {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
