"""The fetcher: polite to every host and hard to knock over, over one transport.

`Fetcher.fetch()` returns a `Page` or raises `FetchError` with an `ErrorKind`; aiohttp's
exceptions never leave the fetch layer (translated at the edge by the transport's
`map_aiohttp_errors()`, crawler/fetch/transport.py, which also owns the session, the redirect
loop and the capped body read). Each fetch goes through five steps, one method each:

1. `_prepare`: the host's circuit breaker (fail fast while it is open, `fetch.breaker`),
   robots.txt unless the source opts out (`fetch.robots`), and the conditional-GET
   validators of the URL (`fetch.httpstate`), into one frozen `Request`;
2. `_with_retries`: retries of transient failures (`fetch.retry`: `RETRYABLE`, HTTP 429) with
   `Backoff`, honouring Retry-After on 429 and 503, never waiting past the give-up bound;
3. `_attempt`: per-host concurrency, the per-host politeness gap (`fetch.politeness`; the
   larger of `politeness_delay` and the site's Crawl-delay), the breaker's permit, the global
   concurrency limit;
4. `_request`: the request, bounded in time, redirects (each hop checked like a first request)
   and bytes (counted after decompression), with the content type checked before the body is
   read and the charset chosen after (`fetch.content`);
5. back in `fetch`, the conditional-GET bookkeeping (`httpstate.revalidate`); the validators are
   recorded by `commit()` once the page's records are safe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlsplit

import yarl
from aiohttp.abc import AbstractResolver

from crawler.backoff import Backoff
from crawler.config.root import Config
from crawler.config.sources import SourceConfig
from crawler.errors import ErrorKind, FetchError
from crawler.fetch.breaker import Breakers, CircuitBreaker
from crawler.fetch.content import check_content_type, choose_charset
from crawler.fetch.hostkeys import HostKeys
from crawler.fetch.httpstate import STAMP_EVERY, HttpState, Revalidation, Validators
from crawler.fetch.login import Login
from crawler.fetch.netguard import SourcePolicy, guarding
from crawler.fetch.politeness import HostPacer
from crawler.fetch.request import PLAIN, Prepared, prepare
from crawler.fetch.retry import HOST_FAILURES, attempt_level, retry_wait
from crawler.fetch.robots import MAX_BYTES as ROBOTS_MAX_BYTES
from crawler.fetch.robots import RobotsCache, RobotsPolicy
from crawler.fetch.sessions import RunSession, Sessions
from crawler.fetch.transport import (
    Page,
    Transport,
    link_rels,
    map_aiohttp_errors,
    raise_for_status,
    redacting,
    revalidated,
)
from crawler.lifecycle import Part
from crawler.observability.metrics import Metrics, status_class

log = logging.getLogger("crawler.fetch")


@dataclass(frozen=True)
class Request:
    """One fetch of one URL for one source: what each of its attempts needs, fixed up front."""

    source: SourceConfig
    url: str
    host: str  # as SourceConfig.hosts has it, so metric series line up (or hostkeys.OTHER)
    headers: dict[str, str]  # the conditional-GET headers; sent to `url` only
    delay: float  # the politeness gap for the host (Crawl-delay included)
    breaker: CircuitBreaker
    options: Prepared = PLAIN  # the source's method, body, headers, proxy for this run
    session: RunSession | None = None  # the run's cookies and login token
    home: str | None = None  # a rendered page's request: the page's origin (secret headers)


class Fetcher(Part):
    """The process's HTTP client; use as an async context manager."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        resolver: AbstractResolver | None = None,
        keep_sessions: bool = True,  # False: log in afresh, store no session (preview)
    ) -> None:
        self.config, self.fc, self.metrics = config, config.fetch, metrics
        # Where each source may connect (crawler.netguard); `resolver` replaces DNS (tests).
        self.policies = {s.name: SourcePolicy.of(s, config) for s in config.sources}
        self.transport = Transport(self.fc, config.user_agent, resolver)
        self._global = asyncio.Semaphore(self.fc.concurrency)
        self._per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self.fc.per_host_concurrency)
        )
        self.pacer = HostPacer()
        self.host_keys = HostKeys()  # a rendered page's third-party hosts: capped
        self.breakers = Breakers(self.fc.circuit, metrics)
        self.robots = RobotsCache(
            self._fetch_robots, config.user_agent, self.fc.robots_ttl, metrics
        )
        self.state: HttpState | None = None
        self._requests: dict[str, Prepared] = {}  # per source: this run's request options
        self._plain = prepare(None, None, self.fc.proxy)  # the rest: a GET, proxy passwords
        # Per source run: its cookies and login; kept across runs under <state_dir>/sessions.
        self.sessions = Sessions(metrics, config.state_dir, keep_sessions, self._send_login)

    def begin_run(self, source: SourceConfig) -> None:
        """Prepare the source's request options (header file and secrets read now, once per
        run: SecretUnavailable) and session (a fresh cookie jar, until `sessions.end()`)."""
        self.sessions.begin(source)
        if source.request is None and source.user_agent is None:
            self._requests.pop(source.name, None)
            return
        self._requests[source.name] = prepare(source.request, source.user_agent, self.fc.proxy)

    async def log_in(self, source: SourceConfig) -> None:
        """Before a run's first page: its stored session, or a login (raise LoginFailed)."""
        with guarding(self.policies.get(source.name) or SourcePolicy.of(source, self.config)):
            await self.sessions.log_in(source)

    def _options(self, source: SourceConfig) -> Prepared:
        return self._requests.get(source.name, self._plain)

    def _agent(self, source: SourceConfig) -> str:
        return source.user_agent or self.config.user_agent

    async def open(self) -> None:
        await self.transport.open()
        if self.fc.conditional_get:
            self.state = HttpState(
                self.config.state_dir / "http_state.sqlite",
                frozenset(s.name for s in self.config.sources),
            )
            await self.state.open()

    async def close(self) -> None:
        self.breakers.close()
        try:
            if self.state is not None:
                await self.state.close()
                self.state = None
        finally:
            await self.transport.close()

    # -- the fetch -----------------------------------------------------------------------------

    async def fetch(self, source: SourceConfig, url: str, *, conditional: bool = True) -> Page:
        """Fetch `url` for `source`, with retries; raise FetchError on any failure.

        `conditional=False`: a full fetch even when the body is known (a listing whose links
        are due to be read again); its validators are still kept for the commit."""
        policy = self.policies.get(source.name) or SourcePolicy.of(source, self.config)
        with guarding(policy):  # every connection below, robots.txt's too, is judged by it
            fetch = functools.partial(self._fetch, source, url, conditional)
            return await self.sessions.fetch(source, url, fetch)

    async def _send_login(self, source: SourceConfig, how: Login) -> Page:
        """One request of a login, through steps 1-4 like any page (never conditional)."""
        request = await self._prepare(dataclasses.replace(source, parser=how.parser), how.url)
        secrets = request.session.secrets() if request.session is not None else ()
        opts = how.options(request.options, secrets)
        return await self._with_retries(dataclasses.replace(request, options=opts))

    async def robots_policy(self, source: SourceConfig, origin: str) -> RobotsPolicy:
        """robots.txt of `origin`, fetched (if not cached) as `source` may connect."""
        policy = self.policies.get(source.name) or SourcePolicy.of(source, self.config)
        with guarding(policy):
            return await self.robots.policy(origin)

    async def _fetch(self, source: SourceConfig, url: str, conditional: bool) -> Page:
        request = await self._prepare(source, url)
        # A POST with a body is another request than a GET of its URL: its own validators.
        key = request.options.key(url)
        old = await self.state.get(source.name, key) if self.state is not None else None
        if old is not None and conditional:
            request = dataclasses.replace(request, headers=old.headers())
        page = await self._with_retries(request)
        return page if self.state is None else revalidated(page, old, conditional)

    async def fetch_for_page(
        self, source: SourceConfig, url: str, wanted: Prepared, home: str, *, document: bool
    ) -> Page:
        """A request of a page the browser renders (crawler/render), `wanted` its method, body
        and headers, `home` the page's origin: robots.txt for the `document` only, any content
        type, nothing conditional, a redirect given back (the browser asks for each hop)."""
        policy = self.policies.get(source.name) or SourcePolicy.of(source, self.config)
        with guarding(policy):
            request = await self._prepare(source, url, robots=document, page=True)
            options = request.options.asked_by_page(wanted)
            return await self._with_retries(
                dataclasses.replace(request, options=options, home=home)
            )

    def commit(
        self,
        source: SourceConfig,
        url: str,
        change: Revalidation | None,
        *,
        next_url: str | None = None,
        stamp_every: float = STAMP_EVERY,
    ) -> None:
        """Record a page's validators (its `Page.validators`), stamped now; call only once its
        records are committed.

        Until then a crash, a parse error or a refused batch leaves the old validators, so the
        next fetch is a full one that gets extracted again: "not modified" can never hide
        records that were not stored. `next_url`: a listing page's next page. It takes the
        validators, not the page, so a page waiting for its batch does not keep its body.
        """
        if self.state is not None and change is not None:
            new = dataclasses.replace(change.new, fetched_at=time.time(), next_url=next_url)
            key = self._options(source).key(url)
            self.state.put(source.name, key, change.old, new, stamp_every)

    async def known(self, source: SourceConfig, url: str) -> Validators | None:
        """What the state store holds for the URL (its stamp, a listing's next page), if any."""
        if self.state is None:
            return None
        return await self.state.get(source.name, self._options(source).key(url))

    async def _prepare(
        self, source: SourceConfig, url: str, robots: bool = True, page: bool = False
    ) -> Request:
        """Step 1: fail fast on an open circuit or robots.txt; the politeness gap."""
        parts = urlsplit(url)
        host = self.host_keys.key(parts.netloc, source.hosts, page=page)
        breaker = self.breakers.get(host)
        breaker.check()
        delay = self.fc.politeness_delay
        origin = f"{parts.scheme}://{parts.netloc}"
        policy = await self._check_robots(source, url, origin) if robots else None
        agent = self._agent(source)
        crawl_delay = policy.crawl_delay(agent) if policy is not None else None
        if crawl_delay:
            delay = max(delay, min(crawl_delay, self.fc.crawl_delay_max))
        opts, session = self._options(source), self.sessions.get(source.name)
        return Request(source, url, host, {}, delay, breaker, opts, session)

    async def _check_hop(self, source: SourceConfig, target: yarl.URL) -> None:
        """A redirect's target is checked like a first request: robots.txt of its host."""
        await self._check_robots(
            source,
            str(target),
            f"{target.scheme}://{target.raw_authority}",
            context=f"redirected to {target}: ",
        )

    async def _check_robots(
        self, source: SourceConfig, url: str, origin: str, context: str = ""
    ) -> RobotsPolicy | None:
        """Raise unless robots.txt of `origin` allows `url` (None: the source does not ask).

        An unreadable robots.txt fails with its real error kind (the host's trouble, e.g. dns
        or http_5xx), a refusal with robots_denied. `context` prefixes the message.
        """
        if not (self.fc.robots and source.robots):
            return None
        policy = await self.robots.policy(origin)
        if not policy.allows(url, self._agent(source)):
            if policy.error_kind is not None:
                raise FetchError(policy.error_kind, context + policy.reason)
            raise FetchError(ErrorKind.ROBOTS_DENIED, context + "disallowed by robots.txt")
        return policy

    async def _with_retries(self, request: Request) -> Page:
        """Step 2: attempts until one succeeds, a failure is final, or time is up."""
        rc = self.fc.retry
        backoff = Backoff(base=rc.base, cap=rc.max, give_up_after=rc.give_up_after)
        attempt = 0
        while True:
            attempt += 1
            try:
                page = await self._attempt(request)
            except FetchError as exc:
                if exc.kind is ErrorKind.CIRCUIT_OPEN:
                    raise  # opened by other calls meanwhile: no request was made
                wait = retry_wait(self.fc.retry, exc, attempt, backoff)
                log.log(
                    attempt_level(request.url, request.home),
                    "fetch attempt failed" + (", retrying" if wait is not None else ""),
                    extra={
                        "source": request.source.name,
                        "url": request.url,
                        "attempt": attempt,
                        "error_kind": exc.kind.value,
                        "status": exc.status,
                        "error": str(exc),
                        "retry_in_ms": round(wait * 1000) if wait is not None else None,
                    },
                )
                if wait is None:
                    raise
                self.metrics.fetch_retries.labels(request.source.name, exc.kind.value).inc()
                await asyncio.sleep(wait)
                continue
            if attempt > 1:
                page = dataclasses.replace(page, attempts=attempt)
            return page

    async def _attempt(self, request: Request) -> Page:
        """Step 3: wait for the host's turn and the breaker's permit, then one request."""
        breaker = request.breaker
        async with self._per_host[request.host]:
            await self.pacer.wait(request.host, request.delay)
            permit = breaker.acquire()
            try:
                async with self._global:
                    page = await self._request(request)
            except FetchError as exc:
                breaker.record(permit, exc.kind in HOST_FAILURES or exc.status == 429)
                raise
            except BaseException:
                breaker.release(permit)
                raise
            breaker.record(permit, False)
            return page

    async def _request(self, request: Request) -> Page:
        """Step 4: one GET (redirects followed by hand), its body read within the cap."""
        m, source, browser = self.metrics, request.source, request.home is not None
        status: int | None = None
        body = b""
        started = time.monotonic()
        m.in_flight.inc()
        try:
            with redacting(request.options, request.session), map_aiohttp_errors():
                async with await self.transport.send(
                    request.url,
                    request.options,
                    request.headers,
                    allow_https_to_http=request.source.allow_https_to_http,
                    source_name=request.source.name,
                    check_hop=functools.partial(self._check_hop, request.source),
                    session=request.session,
                    home=request.home,
                    follow=not browser,
                ) as resp:
                    status = resp.status
                    raise_for_status(resp)
                    if status != 304:
                        declared = "Content-Type" in resp.headers
                        if not browser:  # a browser takes what its page asked for
                            check_content_type(source.parser, declared, resp.content_type)
                        body = await self.transport.read_capped(resp, self.fc.max_response_bytes)
                    return Page(
                        url=request.url,
                        status=status,
                        body=body,
                        content_type=resp.content_type or "",
                        charset=choose_charset(resp.charset, body, source.parser),
                        duration=time.monotonic() - started,
                        not_modified=status == 304,
                        etag=resp.headers.get("ETag"),
                        last_modified=resp.headers.get("Last-Modified"),
                        links=link_rels(resp) if "Link" in resp.headers else None,
                        final_url=str(resp.url) if str(resp.url) != request.url else None,
                        location=resp.headers.get("Location") if browser else None,
                    )
        finally:
            m.in_flight.dec()
            # A rendered page's third-party hosts are not configured: one series for them all.
            host = request.host if not browser or request.host in source.hosts else "other"
            m.requests.labels(source.name, host, status_class(status)).inc()
            m.request_duration.labels(source.name).observe(time.monotonic() - started)
            m.response_bytes.labels(source.name).inc(len(body))

    async def _fetch_robots(self, url: str) -> tuple[int, bytes]:
        """GET a robots.txt: same timeouts and politeness, body truncated at its limit."""
        m = self.metrics
        host = urlsplit(url).netloc
        status: int | None = None
        started = time.monotonic()
        async with self._per_host[host]:
            await self.pacer.wait(host, self.fc.politeness_delay)
            try:
                with map_aiohttp_errors():
                    async with self.transport.session.get(
                        url,
                        allow_redirects=True,
                        max_redirects=self.fc.max_redirects,
                        proxy=self.transport.proxy_for(url),
                    ) as resp:
                        status = resp.status
                        if not 200 <= status < 300:
                            return status, b""
                        body = await self.transport.read_capped(
                            resp, ROBOTS_MAX_BYTES, truncate=True
                        )
                        return status, body
            finally:
                m.requests.labels("robots", host, status_class(status)).inc()
                m.request_duration.labels("robots").observe(time.monotonic() - started)
