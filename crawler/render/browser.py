"""The browser: one per crawler, reached over the DevTools protocol, never trusted to stay up.

`Browser` is a `Part`. It connects to `browser.endpoint` (its WebSocket URL read again at every
connect) or starts `browser.executable` itself (`LocalChromium`), and keeps trying with
backoff while it is unreachable (`crawler_browser_up`, `/readyz`). `Browser.context()` opens one
browser context per source run (its cookies and storage are the run's alone) and disposes of
it in `finally`; `Context.render()` renders one page in a tab of it, at most
`browser.max_pages` at once over all sources. A browser that crashes or disconnects costs the
pages rendering at that moment one `browser` failure each; the next page reconnects (and, in
a new browser, opens a new context). A local Chromium is restarted after `restart_after`
pages, between two renders, and its whole process group is killed and reaped on stop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import aiohttp

from crawler.backoff import Backoff
from crawler.errors import BrowserError
from crawler.lifecycle import Part, stop_task
from crawler.render.cdp import Connection
from crawler.render.page import Count, PageFetch, Rendered, RenderSettings, Tab
from crawler.render.reaper import (
    STOP_TIMEOUT,
    become_subreaper,
    group_of,
    reap,
    reap_orphans,
)

if TYPE_CHECKING:
    from crawler.config.render import BrowserConfig
    from crawler.observability.metrics import Metrics

log = logging.getLogger("crawler.render")

# Every call to the browser outside a render (connect, contexts) answers within this.
CALL_TIMEOUT = 10.0
# A local Chromium: how long it gets to say where it listens (to stop: reaper.STOP_TIMEOUT).
START_TIMEOUT = 30.0
REAP_EVERY = 30.0  # seconds between looks for exited orphans of a local browser
# The browser touches no network of its own: no background services, no QUIC; every request
# it would make goes to a proxy that does not exist, so only intercepted requests (fulfilled
# by the crawler) ever complete, WebSockets and service workers included. WebRTC may send only
# through that proxy (no UDP: STUN/ICE never leaves), and frames of other sites stay in the
# page's process, where the tab's interception and its scripts (page.py) reach them.
WEBRTC_FLAGS = (
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--force-webrtc-ip-handling-policy",
)
ISOLATION_FLAGS = ("--disable-site-isolation-trials",)
LOCAL_FLAGS = (
    *WEBRTC_FLAGS,
    *ISOLATION_FLAGS,
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-dev-shm-usage",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


class LocalChromium:
    """A Chromium started by the crawler, in its own process group (killed whole on stop)."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.proc: asyncio.subprocess.Process | None = None
        self.endpoint = ""
        self._profile: str | None = None
        self._drainer: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> str:
        """Start it and return its WebSocket URL."""
        reap_orphans()  # a former browser's crash handlers, should one have exited since
        self._profile = tempfile.mkdtemp(prefix="crawler-chromium-")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                self.executable,
                *LOCAL_FLAGS,
                f"--user-data-dir={self._profile}",
                "about:blank",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise BrowserError(f"cannot start {self.executable}: {exc}") from exc
        assert self.proc.stderr is not None
        try:
            async with asyncio.timeout(START_TIMEOUT):
                while line := await self.proc.stderr.readline():
                    if found := _LISTENING.search(line.decode(errors="replace")):
                        self.endpoint = found.group(1)
                        break
        except TimeoutError:
            pass
        if not self.endpoint:
            await self.stop()
            raise BrowserError(f"{self.executable} did not open its DevTools port")
        # Its further output is drained so a full pipe never blocks it.
        self._drainer = asyncio.create_task(self._drain(self.proc.stderr))
        log.info("browser started", extra={"pid": self.proc.pid})
        return self.endpoint

    @staticmethod
    async def _drain(stream: asyncio.StreamReader) -> None:
        with contextlib.suppress(Exception):
            while await stream.read(65536):
                pass

    async def stop(self) -> None:
        """TERM the process group, KILL it after `STOP_TIMEOUT`, and reap all of it."""
        proc, self.proc, self.endpoint = self.proc, None, ""
        if proc is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STOP_TIMEOUT):
                        await proc.wait()
                        break
            group = group_of(proc.pid)  # renderers orphaned by the browser's death: ours to reap
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await reap(group)
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None


class Browser(Part):
    """The process's browser; use as an async context manager."""

    def __init__(self, config: BrowserConfig, metrics: Metrics) -> None:
        self.config, self.metrics = config, metrics
        self.local = LocalChromium(config.executable) if config.executable else None
        self._headers: dict[str, str] = {}
        if config.basic_user is not None:
            pair = f"{config.basic_user}:{config.password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        self._http: aiohttp.ClientSession | None = None
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self.slots = asyncio.Semaphore(config.max_pages)
        self._backoff = Backoff(base=1.0, cap=60.0)
        self._retry_at = 0.0
        self._watcher: asyncio.Task[None] | None = None
        self._rendering = 0
        self._restarting = False  # a planned restart: no "connection lost" warning
        self.pages = 0  # renders since the local browser (re)started

    @property
    def up(self) -> bool:
        return self._conn is not None and self._conn.alive

    async def open(self) -> None:
        if self.local is not None:
            become_subreaper()
        # Not the fetcher's session: the browser lives on the LAN (the NAS), which the
        # netguard rightly refuses to every source.
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CALL_TIMEOUT)
        )
        self.metrics.watch_browser(lambda: self.up)
        self._watcher = asyncio.create_task(self._watch(), name="browser-watch")

    async def close(self) -> None:
        if self._watcher is not None:
            await stop_task(self._watcher)
        async with self._lock:
            await self._disconnect()
        if self._http is not None:
            await self._http.close()

    async def _watch(self) -> None:
        """Keep the browser connected (with backoff) so `up` says whether it is reachable."""
        while True:
            conn = self._conn
            if conn is not None and conn.alive:
                try:
                    async with asyncio.timeout(REAP_EVERY):
                        await conn.closed.wait()
                except TimeoutError:
                    if self.local is not None:
                        reap_orphans()  # a crash handler of a browser stopped before
                    continue
                if not self._restarting:
                    log.warning("browser connection lost")
                continue
            with contextlib.suppress(BrowserError):
                await self.connection()
            if not self.up:
                await asyncio.sleep(max(0.1, self._retry_at - time.monotonic()))

    async def connection(self) -> Connection:
        """The live connection, connecting (or starting a local browser) first if need be;
        raise BrowserError while it is unreachable (retried with backoff, not on every call)."""
        async with self._lock:
            if self._conn is not None and self._conn.alive:
                return self._conn
            now = time.monotonic()
            if now < self._retry_at:
                raise BrowserError(f"browser unreachable; next try in {self._retry_at - now:.0f} s")
            try:
                await self._disconnect()
                endpoint = self.config.endpoint or ""
                if self.local is not None:
                    endpoint = await self.local.start()
                assert self._http is not None
                self._conn = await Connection.open(
                    self._http, endpoint, self._headers, CALL_TIMEOUT
                )
            except BrowserError as exc:
                self._retry_at = time.monotonic() + self._backoff.next_delay()
                log.warning(
                    "browser unreachable",
                    extra={"error": str(exc), "attempt": self._backoff.attempt},
                )
                raise
            self._backoff.reset()
            self._retry_at, self.pages, self._restarting = 0.0, 0, False
            log.info("browser connected")
            return self._conn

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        if self.local is not None and self.local.running:
            await self.local.stop()

    async def _rendered(self) -> None:
        """After a render: restart a local browser that reached `restart_after` pages, once
        no other page is rendering (its contexts are opened again on the next page)."""
        self.pages += 1
        if (
            self.local is not None
            and self.pages >= self.config.restart_after
            and self._rendering == 0
        ):
            async with self._lock:
                log.info("browser restarted", extra={"pages": self.pages})
                self._restarting = True
                await self._disconnect()
            self._retry_at = 0.0

    @contextlib.asynccontextmanager
    async def context(self, source: str) -> AsyncIterator[Context]:
        """One browser context for one source run, disposed of when the run ends."""
        ctx = Context(self, source)
        try:
            yield ctx
        finally:
            await ctx.close()


class Context:
    """A source run's browser context: opened at its first page, again after a reconnect."""

    def __init__(self, browser: Browser, source: str) -> None:
        self.browser, self.source = browser, source
        self._conn: Connection | None = None
        self._id = ""
        self._lock = asyncio.Lock()  # the run's pages render at once: one context for them
        self._disposing: set[asyncio.Task[None]] = set()

    async def _ensure(self) -> Connection:
        async with self._lock:
            conn = await self.browser.connection()
            if conn is not self._conn:
                self._conn, self._id = None, ""
                created = await conn.call(
                    "Target.createBrowserContext", {"disposeOnDetach": True}, timeout=CALL_TIMEOUT
                )
                context_id = created["browserContextId"]
                try:
                    await conn.call(
                        "Browser.setDownloadBehavior",
                        {"behavior": "deny", "browserContextId": context_id},
                        timeout=CALL_TIMEOUT,
                    )
                except BaseException:  # an error, or the page's timeout cancelling it
                    self._dispose_later(conn, context_id)
                    raise
                self._conn, self._id = conn, context_id
            return conn

    def _dispose_later(self, conn: Connection, context_id: str) -> None:
        """Dispose of a context never handed out, in a task of its own: the step after its
        creation failed or was cancelled (a page's timeout), and the page must not wait."""
        task = asyncio.create_task(_dispose(conn, context_id), name="browser-context-dispose")
        self._disposing.add(task)
        task.add_done_callback(self._disposing.discard)

    async def _ensure_within(self, timeout: float) -> Connection:
        """`_ensure()` within the page's `render.timeout`: connecting, or waiting for another
        page's connect, must not outlast the render it is for (a browser that accepts TCP and
        never answers costs each page one `browser` failure, not a hung run)."""
        try:
            async with asyncio.timeout(timeout):
                return await self._ensure()
        except TimeoutError:
            raise BrowserError(f"browser not ready within {timeout:g} s") from None

    async def render(
        self,
        url: str,
        settings: RenderSettings,
        fetch: PageFetch,
        count: Count,
        took: Callable[[float], None],
    ) -> Rendered:
        """Render `url` in a new tab of this context; raise FetchError on failure. `took` is
        told how long the render took, from its turn among `max_pages` (failed ones too)."""
        browser = self.browser
        async with browser.slots:
            browser._rendering += 1
            started = time.monotonic()
            try:
                conn = await self._ensure_within(settings.timeout)
                tab = Tab(conn, self._id, settings, fetch, count, CALL_TIMEOUT)
                return await tab.render(url)
            finally:
                took(time.monotonic() - started)
                browser._rendering -= 1
                await browser._rendered()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._id:
            await _dispose(conn, self._id)
        if self._disposing:
            await asyncio.gather(*self._disposing)


async def _dispose(conn: Connection, context_id: str) -> None:
    """Dispose of a browser context, if its browser is still there to ask."""
    if conn.alive:
        with contextlib.suppress(BrowserError):
            await conn.call(
                "Target.disposeBrowserContext",
                {"browserContextId": context_id},
                timeout=CALL_TIMEOUT,
            )
