"""One page rendered: a tab in the run's browser context whose every request is intercepted.

The tab's requests stop at CDP's `Fetch` domain at the request stage, so the browser never
touches the network: each one is decided here and, if allowed, fetched by the crawler's own
fetch layer (`PageFetch`) and fulfilled into the page.

- a blocked resource type (`render.block`) fails at once, with no fetch (`blocked`);
- a non-http(s) scheme (`file:`, `ftp:`, `chrome:` …) fails at once (`refused`), and so do
  downloads (denied for the context) and WebSockets (blocked by URL pattern);
- what this tab's interception could not see is not there: service, dedicated and shared
  workers, WebRTC's RTCPeerConnection and WebTransport are removed before any script of any
  frame runs
  (and service workers' requests bypassed);
- every other request is fetched (`fetched`), a redirect handed back to the page as the
  redirect, so its next hop is intercepted and checked again and relative URLs resolve as in
  a browser. The main document's fetch failing fails the render with its own error kind.

The whole render, every CDP call included, runs within `render.timeout`: past it the render
fails as `render_timeout`; the tab is closed in `finally` whatever happened.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from crawler.errors import BrowserError, ErrorKind, FetchError
from crawler.render.cdp import Connection

log = logging.getLogger("crawler.render")

# How often `wait_for` looks for its selector (and `networkidle` for quiet), how long no
# request must be in flight for `networkidle` (as Puppeteer's `networkidle0`), how long a tab
# gets to close.
POLL = 0.1
IDLE = 0.5
CLOSE_TIMEOUT = 5.0
KEPT, URL_CHARS = 20, 200  # a render's URLs kept per outcome, and their length
_SCHEMES = frozenset({"http", "https"})
# Before any of the page's scripts, in every frame: no service, dedicated or shared worker can
# be started (a worker's requests would not pass through this tab's interception), and no
# RTCPeerConnection or WebTransport exists (WebRTC's STUN/ICE and WebTransport's QUIC are UDP,
# which `Fetch` never sees).
_WITHOUT = (
    "Worker",
    "SharedWorker",
    "RTCPeerConnection",
    "webkitRTCPeerConnection",
    "WebTransport",
)
_NO_BYPASS = (
    "try { delete Object.getPrototypeOf(navigator).serviceWorker; } catch (e) {}\n"
    + "".join(f"try {{ delete globalThis.{name}; }} catch (e) {{}}\n" for name in _WITHOUT)
)
_WEBSOCKETS = ["ws://*", "wss://*"]
# Request headers the page's own fetch()/XHR set that the server needs to answer alike.
_FORWARDED = frozenset({"accept", "content-type", "accept-language", "x-requested-with"})
_ERROR_REASON = {
    ErrorKind.TIMEOUT: "TimedOut",
    ErrorKind.CONNECT: "ConnectionRefused",
    ErrorKind.DNS: "NameNotResolved",
    ErrorKind.BLOCKED_ADDRESS: "AddressUnreachable",
    ErrorKind.ROBOTS_DENIED: "BlockedByClient",
    ErrorKind.CIRCUIT_OPEN: "BlockedByClient",
}


@dataclass(frozen=True)
class Response:
    """A fetched response as the page gets it: a redirect carries its `location`."""

    status: int
    content_type: str
    body: bytes
    location: str | None = None


@dataclass(frozen=True)
class Wanted:
    """One request of the page, as the fetch layer is asked for it."""

    url: str
    method: str
    headers: dict[str, str]
    body: bytes | None
    document: bool  # the tab's own document (robots.txt applies), not a resource


class PageFetch(Protocol):
    """The crawler's fetch layer as a tab uses it; raises FetchError."""

    def __call__(self, wanted: Wanted) -> Awaitable[Response]: ...


@dataclass(frozen=True)
class RenderSettings:
    """What a tab needs of a source's `render` section."""

    wait: str  # "load" | "networkidle" | "selector"
    wait_for: str | None
    timeout: float
    block: frozenset[str]
    max_requests: int = 200  # fetched through the crawler per page; beyond: blocked
    max_bytes: int = 10 * 2**20  # the rendered DOM's cap (the fetch layer's body cap)


@dataclass
class Rendered:
    """What a render gives: the DOM as HTML, and what happened on the way."""

    url: str  # the document's URL after redirects
    status: int
    html: str = ""
    duration: float = 0.0
    fetched: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    blocked_kinds: dict[str, int] = field(default_factory=dict)  # resource type → count
    refused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # fetched|blocked|refused|failed → n

    def note(self, outcome: str, url: str) -> None:
        """Count a request; keep its URL, shortened, only among the first `KEPT` (for logs and
        `preview`): a page can make thousands, and a `data:` URL can be megabytes."""
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        kept: list[str] = getattr(self, outcome)
        if len(kept) < KEPT:
            kept.append(url if len(url) <= URL_CHARS else url[:URL_CHARS] + "…")


Count = Callable[[str], None]  # one request's outcome: fetched | blocked | refused


class Tab:
    """One tab of a browser context, alive for one render (`render()` closes it)."""

    def __init__(
        self,
        conn: Connection,
        context_id: str,
        settings: RenderSettings,
        fetch: PageFetch,
        count: Count,
        call_timeout: float,
    ) -> None:
        self.conn, self.context_id, self.settings = conn, context_id, settings
        self.fetch, self.count, self.call_timeout = fetch, count, call_timeout
        self.target = self.session = ""
        self.result = Rendered(url="", status=0)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loaded = asyncio.Event()
        self._active = time.monotonic()  # when a request of the page last started or ended
        self._gone = asyncio.Event()
        self._document_error: FetchError | None = None
        self._loader = ""
        self._requests = 0  # handed to the crawler's fetch layer (`max_requests`)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.conn.call(
            method, params, session=self.session or None, timeout=self.call_timeout
        )

    async def render(self, url: str) -> Rendered:
        """Render `url`; raise FetchError (`render_timeout`, `browser`, or the document's own
        failure). The tab is closed before this returns or raises."""
        started = time.monotonic()
        self.result.url = url
        try:
            try:
                async with asyncio.timeout(self.settings.timeout):
                    await self._open()
                    await self._navigate(url)
                    await self._settle()
                    self.result.html = await self._html()
            except TimeoutError:
                raise FetchError(
                    ErrorKind.RENDER_TIMEOUT,
                    f"not rendered within {self.settings.timeout:g} s",
                ) from None
            if self._document_error is not None:
                raise self._document_error
            if len(self.result.html.encode("utf-8", "surrogatepass")) > self.settings.max_bytes:
                raise FetchError(
                    ErrorKind.TOO_LARGE,
                    f"rendered DOM over the cap of {self.settings.max_bytes} bytes",
                )
        finally:
            await self._close()
            self.result.duration = time.monotonic() - started
        return self.result

    # -- the tab's life -----------------------------------------------------------------------

    async def _open(self) -> None:
        created = await self.call(
            "Target.createTarget", {"url": "about:blank", "browserContextId": self.context_id}
        )
        self.target = created["targetId"]
        attached = await self.call(
            "Target.attachToTarget", {"targetId": self.target, "flatten": True}
        )
        self.session = attached["sessionId"]
        self.conn.on(self.session, self._event)
        patterns = [{"urlPattern": "*", "requestStage": "Request"}]
        await asyncio.gather(
            self.call("Fetch.enable", {"patterns": patterns}),
            self.call("Page.enable"),
            self.call("Page.setLifecycleEventsEnabled", {"enabled": True}),
            self.call("Page.addScriptToEvaluateOnNewDocument", {"source": _NO_BYPASS}),
            self.call("Network.enable", {"maxTotalBufferSize": 0, "maxResourceBufferSize": 0}),
            self.call("Network.setBlockedURLs", {"urls": _WEBSOCKETS}),
            self.call("Network.setBypassServiceWorker", {"bypass": True}),
        )

    async def _navigate(self, url: str) -> None:
        answer = await self.call("Page.navigate", {"url": url})
        self._loader = answer.get("loaderId", "")
        if answer.get("errorText") and self._document_error is None:
            raise FetchError(ErrorKind.BROWSER, f"navigation failed: {answer['errorText']}")

    async def _settle(self) -> None:
        """Wait until the page is ready by the source's rule (or its document failed)."""
        failed = asyncio.create_task(self._gone.wait())
        try:
            if self.settings.wait == "selector":
                ready: asyncio.Task[Any] = asyncio.create_task(self._selector())
            elif self.settings.wait == "networkidle":
                ready = asyncio.create_task(self._network_idle())
            else:
                ready = asyncio.create_task(self._loaded.wait())
            done, _ = await asyncio.wait({ready, failed}, return_when=asyncio.FIRST_COMPLETED)
            if ready in done:
                ready.result()
        finally:
            for task in (ready, failed):
                task.cancel()
        if self._gone.is_set() and self._document_error is None:
            raise BrowserError("the tab or the browser went away")

    async def _network_idle(self) -> None:
        """After `load`, no request of the page in flight for `IDLE` seconds. Counted here, on
        the intercepted requests: the browser's own idle signal does not see paused ones."""
        await self._loaded.wait()
        while True:
            quiet = time.monotonic() - self._active
            if not self._tasks and quiet >= IDLE:
                return
            await asyncio.sleep(POLL if self._tasks else IDLE - quiet)

    async def _selector(self) -> None:
        expression = f"document.querySelector({json.dumps(self.settings.wait_for)}) !== null"
        while True:
            answer = await self.call(
                "Runtime.evaluate", {"expression": expression, "returnByValue": True}
            )
            if answer.get("result", {}).get("value") is True:
                return
            await asyncio.sleep(POLL)

    async def _html(self) -> str:
        answer = await self.call(
            "Runtime.evaluate",
            {"expression": "document.documentElement.outerHTML", "returnByValue": True},
        )
        value = answer.get("result", {}).get("value")
        return value if isinstance(value, str) else ""

    async def _close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.session:
            self.conn.on(self.session, None)
        if self.target and self.conn.alive:
            with contextlib.suppress(BrowserError):
                await self.conn.call(
                    "Target.closeTarget", {"targetId": self.target}, timeout=CLOSE_TIMEOUT
                )

    # -- events ----------------------------------------------------------------------------------

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Fetch.requestPaused":
            self._active = time.monotonic()
            task = asyncio.create_task(self._paused(params))
            self._tasks.add(task)
            task.add_done_callback(self._request_done)
        elif method == "Page.lifecycleEvent" and params.get("name") == "load":
            if params.get("frameId") == self.target and params.get("loaderId") == self._loader:
                self._loaded.set()
        elif method == "Network.webSocketCreated":
            self._refuse_seen(params.get("url", ""))
        elif method in ("Inspector.detached", "Inspector.targetCrashed", "Connection.closed"):
            self._gone.set()

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._active = time.monotonic()

    def _refuse_seen(self, url: str) -> None:
        self.result.note("refused", url)
        self.count("refused")

    async def _paused(self, params: dict[str, Any]) -> None:
        request_id = params["requestId"]
        request = params.get("request", {})
        url = request.get("url", "")
        kind = str(params.get("resourceType", "Other")).lower()
        document = kind == "document" and params.get("frameId") == self.target
        try:
            if kind == "other" and urlsplit(url).path == "/favicon.ico":
                await self._fail(request_id, "BlockedByClient")  # the browser's own, not the page's
                return
            if urlsplit(url).scheme not in _SCHEMES:
                self._refuse_seen(url)
                await self._fail(request_id, "BlockedByClient")
                return
            if kind in self.settings.block and not document:
                self.result.note("blocked", url)
                self.result.blocked_kinds[kind] = self.result.blocked_kinds.get(kind, 0) + 1
                self.count("blocked")
                await self._fail(request_id, "BlockedByClient")
                return
            self._requests += 1
            if self._requests > self.settings.max_requests and not document:
                self.result.note("blocked", url)
                self.count("blocked")
                await self._fail(request_id, "BlockedByClient")
                return
            await self._fetch_into_page(request_id, request, url, document)
        except BrowserError:
            pass  # the tab or the browser is gone: the render fails on its own
        except asyncio.CancelledError:
            raise

    async def _fetch_into_page(
        self, request_id: str, request: dict[str, Any], url: str, document: bool
    ) -> None:
        headers = {
            k: v for k, v in (request.get("headers") or {}).items() if k.lower() in _FORWARDED
        }
        body = request.get("postData")
        wanted = Wanted(
            url=url,
            method=str(request.get("method", "GET")).upper(),
            headers=headers,
            body=body.encode() if isinstance(body, str) else None,
            document=document,
        )
        try:
            response = await self.fetch(wanted)
        except FetchError as exc:
            if document:
                self._document_error = exc
                self._gone.set()
            elif exc.status is not None:  # the server's answer: the page sees it
                self.count("fetched")
                self.result.note("fetched", url)
                await self._fulfil(request_id, Response(exc.status, "text/plain", b""))
                return
            if exc.kind in (ErrorKind.BLOCKED_ADDRESS, ErrorKind.ROBOTS_DENIED):
                self._refuse_seen(url)
            else:
                self.result.note("failed", url)
            await self._fail(request_id, _ERROR_REASON.get(exc.kind, "Failed"))
            return
        self.count("fetched")
        self.result.note("fetched", url)
        if document:
            self.result.url, self.result.status = url, response.status
        await self._fulfil(request_id, response)

    async def _fulfil(self, request_id: str, response: Response) -> None:
        headers = [{"name": "Content-Type", "value": response.content_type or "text/plain"}]
        if response.location is not None:
            headers.append({"name": "Location", "value": response.location})
        await self.call(
            "Fetch.fulfillRequest",
            {
                "requestId": request_id,
                "responseCode": response.status,
                "responseHeaders": headers,
                "body": base64.b64encode(response.body).decode("ascii"),
            },
        )

    async def _fail(self, request_id: str, reason: str) -> None:
        await self.call("Fetch.failRequest", {"requestId": request_id, "errorReason": reason})
