"""The Chrome DevTools Protocol client: one WebSocket to a browser, calls and events.

Our own, on aiohttp's WebSocket client (already the crawler's HTTP library): no Node.js, no
generated bindings, pure Python on armv7, arm64 and x86_64. It knows the protocol's envelope
only (`id`/`method`/`params`/`sessionId` out; results, errors and events in); the few commands
the renderer sends are plain names and dicts.

Every call is under a timeout. A dropped connection fails every pending call at once with
`BrowserError`, so nothing waits on a browser that is gone. aiohttp's exceptions stop here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from crawler.errors import BrowserError

log = logging.getLogger("crawler.render")

# Rendered DOMs come back in one message; the fetch cap bounds what a page can hold, this
# bounds what the browser can send (a DOM grows past its HTML with script-built nodes).
MAX_MESSAGE = 64 * 1024 * 1024

Handler = Callable[[str, dict[str, Any]], None]


def host_header(endpoint: str) -> dict[str, str]:
    """The Host to send a browser at `endpoint`. Chromium answers DevTools requests (`/json/*` and
    the WebSocket upgrade alike) only when their Host is an IP address or `localhost`, its guard
    against DNS rebinding, which no flag turns off: a plain http/ws endpoint named by a name (the
    compose service, `http://browser:9222`) is Chromium itself, so it is told `localhost`. Over
    https/wss the endpoint is a proxy (the stack's, port 9222): it picks its site by the Host
    and sets Chromium's itself."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "ws") or host == "localhost":
        return {}
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return {}
    return {"Host": f"localhost:{parts.port}" if parts.port else "localhost"}


async def websocket_url(
    session: aiohttp.ClientSession, endpoint: str, headers: dict[str, str], timeout: float
) -> str:
    """The browser's WebSocket URL: a ws(s) URL as given, else read from `/json/version` of an
    http(s) endpoint (at every connect, so a restarted browser is found again). Its path is
    kept and put on the endpoint's own host: behind a proxy the browser names itself by an
    address the crawler cannot reach."""
    parts = urlsplit(endpoint)
    if parts.scheme in ("ws", "wss"):
        return endpoint
    version = endpoint.rstrip("/") + "/json/version"
    try:
        async with asyncio.timeout(timeout):
            async with session.get(version, headers=headers | host_header(endpoint)) as resp:
                if resp.status != 200:
                    raise BrowserError(f"{version}: HTTP {resp.status}")
                info = await resp.json(content_type=None)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        raise BrowserError(f"{version}: {exc or type(exc).__name__}") from exc
    if not isinstance(info, dict) or not isinstance(info.get("webSocketDebuggerUrl"), str):
        raise BrowserError(f"{version}: no webSocketDebuggerUrl")
    path = urlsplit(info["webSocketDebuggerUrl"]).path
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class Connection:
    """One WebSocket to a browser. `call()` sends a command and waits for its answer; `on()`
    routes a target session's events to a handler. Open with `Connection.open()`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._handlers: dict[str, Handler] = {}  # by sessionId ("" for the browser's own)
        self._reader = asyncio.create_task(self._read(), name="cdp-reader")
        self.closed = asyncio.Event()

    @classmethod
    async def open(
        cls,
        session: aiohttp.ClientSession,
        endpoint: str,
        headers: dict[str, str],
        timeout: float,
    ) -> Connection:
        url = await websocket_url(session, endpoint, headers, timeout)
        try:
            # The whole handshake, not only the TCP connect: a browser (or a proxy) that
            # accepts and never answers the upgrade would otherwise hold the connect forever.
            async with asyncio.timeout(timeout):
                ws = await session.ws_connect(
                    url,
                    headers=headers | host_header(url),
                    timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
                    max_msg_size=MAX_MESSAGE,
                    autoping=True,
                    heartbeat=None,
                    compress=0,
                )
        except TimeoutError:
            raise BrowserError(
                f"cannot connect to the browser: no WebSocket handshake within {timeout:g} s"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise BrowserError(f"cannot connect to the browser: {exc}") from exc
        return cls(ws)

    @property
    def alive(self) -> bool:
        return not self.closed.is_set()

    def on(self, session_id: str, handler: Handler | None) -> None:
        """Route events of `session_id` to `handler` (None: stop routing them)."""
        if handler is None:
            self._handlers.pop(session_id, None)
        else:
            self._handlers[session_id] = handler

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float,
    ) -> dict[str, Any]:
        """Send one command and return its result; raise BrowserError on an error answer, a
        lost connection or no answer within `timeout` seconds."""
        if self.closed.is_set():
            raise BrowserError("the browser connection is closed")
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        try:
            # Sending too: a browser that stops reading fills the socket, and the send waits.
            async with asyncio.timeout(timeout):
                await self._ws.send_str(json.dumps(message))
                return await future
        except TimeoutError:
            raise BrowserError(f"{method}: no answer within {timeout:g} s") from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise BrowserError(f"{method}: {exc}") from exc
        finally:
            self._pending.pop(ident, None)

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if "id" in data:
                    future = self._pending.get(data["id"])
                    if future is None or future.done():
                        continue
                    if "error" in data:
                        error = data["error"]
                        text = error.get("message", error) if isinstance(error, dict) else error
                        future.set_exception(BrowserError(f"browser refused: {text}"))
                    else:
                        future.set_result(data.get("result") or {})
                elif "method" in data:
                    handler = self._handlers.get(data.get("sessionId", ""))
                    if handler is not None:
                        try:
                            handler(data["method"], data.get("params") or {})
                        except Exception:  # one bad event must not stop the reader
                            log.exception("browser event handler failed")
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.debug("browser connection lost", extra={"error": str(exc)})
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BrowserError("the browser connection was lost"))
            for handler in list(self._handlers.values()):
                with contextlib.suppress(Exception):
                    handler("Connection.closed", {})

    async def close(self) -> None:
        with contextlib.suppress(aiohttp.ClientError, ConnectionError, TimeoutError):
            async with asyncio.timeout(2):
                await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self.closed.set()
