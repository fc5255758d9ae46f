"""The transport: the process's one aiohttp session and what is done on the wire, apart from
the fetcher's steps (crawler/fetch/client.py), as httpx keeps its client apart from its
`_transports/`. It opens the session (timeouts, the LAN-guarded connector, no proxy variables read
per request), sends a request following redirects by hand (each hop handed back to the fetcher to
be checked like a first request), reads a body within its cap (bytes counted after
decompression), and is the one edge where aiohttp's, asyncio's and ssl's exceptions become
`FetchError`s (`map_aiohttp_errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timezone
from typing import Protocol

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver

from crawler.config.fetch import FetchConfig
from crawler.errors import ErrorKind, FetchError
from crawler.fetch.httpstate import Revalidation, Validators, revalidate
from crawler.fetch.netguard import GuardedConnector
from crawler.fetch.request import EnvProxies, Prepared, origin, redact

_CHUNK = 64 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})

# Called with each redirect's target before it is followed; raises to refuse it.
HopCheck = Callable[[yarl.URL], Awaitable[None]]


class HopSession(Protocol):
    """A run's session as each hop sees it (crawler/fetch/sessions.py's `RunSession`)."""

    def headers_for(self, url: str) -> dict[str, str]: ...  # its Cookie, its token

    def take(self, resp: aiohttp.ClientResponse) -> None: ...  # the cookies the answer sets

    def secrets(self) -> tuple[str, ...]: ...  # to blank out of error texts


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
    links: dict[str, str] | None = None  # RFC 8288 Link header: rel → absolute URL
    location: str | None = None  # a redirect handed back as it is (a rendered page's request)
    # The validators to record by Fetcher.commit() once the page's records are safe.
    validators: Revalidation | None = None
    final_url: str | None = None  # where the redirects ended (None: not redirected)


def revalidated(page: Page, old: Validators | None, conditional: bool) -> Page:
    """The page with its conditional-GET bookkeeping against `old`, the URL's validators:
    "not modified" (no body) when unchanged (`httpstate.revalidate`)."""
    change = revalidate(old, page.status, page.etag, page.last_modified, page.body, conditional)
    if change is None:
        return page
    if change.unchanged:
        page = dataclasses.replace(page, body=b"", not_modified=True)
    return dataclasses.replace(page, validators=change)


@contextlib.contextmanager
def map_aiohttp_errors() -> Iterator[None]:
    """Translate aiohttp, asyncio and ssl exceptions raised inside into FetchError.

    The one edge where third-party exceptions become our error kinds (as httpx's
    `map_httpcore_exceptions`). Ours and cancellation pass through; an exception that is not a
    network or HTTP failure is a bug and is re-raised as it is.
    """
    try:
        yield
    except FetchError:
        raise
    except Exception as exc:
        error = _error_of(exc)
        if error is None:
            raise
        raise error from exc


@contextlib.contextmanager
def redacting(options: Prepared, session: HopSession | None = None) -> Iterator[None]:
    """Blank the source's secrets, and its session's (cookie values, token, password), out of
    a FetchError's message (a server or a proxy may echo a header back into an error text);
    the kind, status and Retry-After are kept."""
    try:
        yield
    except FetchError as exc:
        text = str(exc)
        clean = redact(text, (*options.secrets, *(session.secrets() if session else ())))
        if clean == text:
            raise
        prefix = f"{exc.kind.value}: "
        message = clean[len(prefix) :] if clean.startswith(prefix) else clean
        raise FetchError(
            exc.kind, message, status=exc.status, retry_after=exc.retry_after
        ) from None


def _error_of(exc: Exception) -> FetchError | None:
    # Order matters: aiohttp's classes inherit from each other and from OSError/TimeoutError.
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
    return None


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


def raise_for_status(resp: aiohttp.ClientResponse) -> None:
    status = resp.status
    if status >= 400:
        raise FetchError(
            ErrorKind.HTTP_5XX if status >= 500 else ErrorKind.HTTP_4XX,
            f"HTTP {status}",
            status=status,
            retry_after=retry_after(resp.headers.get("Retry-After")),
        )


class Transport:
    """The aiohttp session and the wire-level work; opened and closed by the Fetcher."""

    def __init__(
        self, fc: FetchConfig, user_agent: str, resolver: AbstractResolver | None = None
    ) -> None:
        self.fc, self._user_agent, self._resolver = fc, user_agent, resolver
        self._session: aiohttp.ClientSession | None = None
        self._env_proxies = EnvProxies()  # HTTP(S)_PROXY / NO_PROXY, when no proxy is configured

    async def open(self) -> None:
        fc = self.fc
        timeout = aiohttp.ClientTimeout(
            total=fc.total_timeout, sock_connect=fc.connect_timeout, sock_read=fc.read_timeout
        )
        connector = GuardedConnector(
            limit=fc.concurrency,
            limit_per_host=fc.per_host_concurrency,
            ttl_dns_cache=300,
            enable_cleanup_closed=True,
            resolver=self._resolver,
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            connector=connector,
            headers={"User-Agent": self._user_agent},
            max_line_size=16384,
            max_field_size=16384,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # the proxy variables are read once: self._env_proxies
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Fetcher used outside `async with`")
        return self._session

    def proxy_for(self, url: str, opts: Prepared | None = None) -> str | None:
        """The proxy a request to `url` goes through: the source's, `fetch.proxy`, or the
        environment's (read once)."""
        return (opts.proxy if opts else None) or self.fc.proxy or self._env_proxies.for_url(url)

    async def send(
        self,
        url: str,
        opts: Prepared,
        first_headers: Mapping[str, str],
        *,
        allow_https_to_http: bool,
        source_name: str,
        check_hop: HopCheck,
        session: HopSession | None = None,
        home: str | None = None,
        follow: bool = True,
    ) -> aiohttp.ClientResponse:
        """GET the URL, following redirects by hand so every hop is checked like a first
        request: its scheme, and robots.txt of the host it leads to (aiohttp would follow
        blindly).

        As aiohttp counts them: the `max_redirects`-th redirect response is an error. The
        conditional headers belong to the URL asked for and are not sent to other URLs. The
        run's `session` adds its cookies and token to each hop and takes the cookies each
        answer sets, redirects' included (a login's session cookie comes with its 302).
        `home`: the origin the secret headers belong to (default: the URL's); `follow=False`
        returns a redirect as it is (a browser follows it itself, each hop asked again).
        """
        method, data, home = opts.method, opts.data, home or origin(url)
        current, hops = url, 0
        while True:
            headers = opts.headers_for(current, home)  # secret ones: the URL's origin only
            if current == url:
                headers.update(first_headers)
            if session is not None:
                for name, value in session.headers_for(current).items():
                    mine = headers.get(name) if name == "Cookie" else None  # a headers_file's
                    headers[name] = f"{mine}; {value}" if mine else value
            resp = await self.session.request(
                method,
                current,
                headers=headers or None,
                data=data,
                proxy=self.proxy_for(current, opts),
                allow_redirects=False,
            )
            if session is not None:
                session.take(resp)
            if not follow or resp.status not in REDIRECTS or "Location" not in resp.headers:
                return resp
            hops += 1
            target = resp.url.join(yarl.URL(resp.headers["Location"]))
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method, data = "GET", None  # as browsers do; 307/308 repeat the request
            resp.release()
            if data is not None and _site(target) != _site(resp.url):
                # A 307/308 re-sends the body (a login's password) wherever it points.
                raise FetchError(
                    ErrorKind.REDIRECT,
                    f"HTTP {resp.status} to another origin ({target.scheme}://{target.host}:"
                    f"{target.port}) would re-send the request's body: refused",
                )
            if hops >= self.fc.max_redirects:
                raise FetchError(ErrorKind.REDIRECT, f"more than {hops - 1} redirects")
            if target.scheme not in ("http", "https"):
                raise FetchError(ErrorKind.REDIRECT, f"redirect to a {target.scheme!r} URL")
            if resp.url.scheme == "https" and target.scheme == "http" and not allow_https_to_http:
                raise FetchError(
                    ErrorKind.REDIRECT,
                    f"redirect from https to plain http ({target}): refused; set "
                    f"`allow_https_to_http: true` on source {source_name!r} to follow it",
                )
            await check_hop(target)
            current = str(target)

    async def read_capped(
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
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            if size + len(chunk) > cap:
                if truncate:
                    chunks.append(chunk[: cap - size])
                    break
                raise FetchError(ErrorKind.TOO_LARGE, f"body over the cap of {cap} bytes")
            chunks.append(chunk)
            size += len(chunk)
        # The body is copied once at most: join gives a lone chunk back as it is (a bytearray
        # grown chunk by chunk, then turned into bytes, held it twice and copied it twice).
        return b"".join(chunks)


def _site(url: yarl.URL) -> tuple[str, str | None, int | None]:
    """(scheme, host, port) of a URL, its default port spelled out."""
    return url.scheme, url.host, url.port


def link_rels(resp: aiohttp.ClientResponse) -> dict[str, str] | None:
    """The Link header's targets by relation (`rel="next last"` names two)."""
    try:
        links = resp.links
    except ValueError:  # a hostile header: no links, not a failed page
        return None
    out: dict[str, str] = {}
    for rel, link in links.items():
        for name in str(rel).split():
            out.setdefault(name.lower(), str(link.get("url")))
    return out
