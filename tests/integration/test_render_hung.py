"""A browser endpoint that accepts TCP and then never answers (issue 26 item 3): each page costs
one counted `browser` failure within its `render.timeout`, never a hung run, and once a real
Chromium answers at that endpoint again the source's next run renders."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from crawler.config.root import load_config
from crawler.service import Service
from tests.chromium import Chromium
from tests.integration.test_render import browser_contexts, sample, shop_source
from tests.render_site import LanHost, ShopSite

# Far above the two pages' 2 s each: reached only by a run that hangs (the bug), so the test
# fails instead of hanging the suite. Not a measurement.
HANG_GUARD = 120.0


class Front:
    """A TCP server on 127.0.0.1 standing where the browser should be. `mode`, read at each
    new connection: `silent` accepts and never sends a byte; `no_upgrade` answers
    `/json/version` but never the WebSocket handshake; `forward` passes bytes to Chromium;
    `no_download_deny` passes them too but drops the crawler's `Browser.setDownloadBehavior`
    calls, which Chromium then never answers."""

    def __init__(self, chromium_port: int, mode: str) -> None:
        self.chromium_port, self.mode = chromium_port, mode
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError):
            if self.mode in ("forward", "no_download_deny"):
                await self._forward(reader, writer)
                return
            head = await reader.readuntil(b"\r\n\r\n")
            if self.mode == "no_upgrade" and head.startswith(b"GET /json/version "):
                body = json.dumps(
                    {"webSocketDebuggerUrl": f"ws://127.0.0.1:{self.port}/devtools/browser/x"}
                ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
                writer.close()
                return
            while await reader.read(65536):  # silent until the client gives up
                pass
        writer.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.chromium_port)
        self._writers.append(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        if self.mode == "no_download_deny":
            upstream = self._drop(reader, up_writer, b'"Browser.setDownloadBehavior"')
        else:
            upstream = pipe(reader, up_writer)
        await asyncio.gather(upstream, pipe(up_reader, writer))

    @staticmethod
    async def _drop(src: asyncio.StreamReader, dst: asyncio.StreamWriter, needle: bytes) -> None:
        """Pass the crawler's HTTP requests on, then its WebSocket frames (RFC 6455, masked
        from a client) except those whose text holds `needle`."""
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:  # /json/version and the upgrade may share one connection
                head = await src.readuntil(b"\r\n\r\n")
                dst.write(head)
                if b"upgrade: websocket" in head.lower():
                    break
            while True:
                first = await src.readexactly(2)
                size, extended = first[1] & 0x7F, b""
                if size >= 126:
                    extended = await src.readexactly(2 if size == 126 else 8)
                    size = int.from_bytes(extended, "big")
                mask = await src.readexactly(4) if first[1] & 0x80 else b""
                payload = await src.readexactly(size)
                text = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if mask else payload
                if needle not in text:
                    dst.write(first + extended + mask + payload)
                    await dst.drain()
        dst.close()


@pytest.fixture
def shop() -> Iterator[ShopSite]:
    lan = LanHost().start()
    s = ShopSite(lan=lan).start()
    yield s
    s.stop()
    lan.stop()


@pytest.fixture
async def front(request: pytest.FixtureRequest, chromium: Chromium) -> AsyncIterator[Front]:
    f = Front(chromium.port, request.param)
    await f.start()
    yield f
    await f.stop()


@pytest.mark.parametrize("front", ["silent", "no_upgrade"], indirect=True)
async def test_a_browser_that_never_answers_costs_each_page_one_browser_failure(
    front: Front,
    shop: ShopSite,
    chromium: Chromium,
    write_config: Callable[..., Path],
) -> None:
    source = shop_source(shop, timeout="2s")
    source.pop("paginate")
    source["urls"] = [f"{shop.base}/shop?page={i}" for i in (1, 2)]
    cfg = write_config(browser={"endpoint": front.endpoint}, sources=[source])
    registry = CollectorRegistry()
    service = Service(load_config(cfg), registry)
    async with service.opened() as pipeline, asyncio.timeout(HANG_GUARD):
        result = await pipeline.run_source(pipeline.config.sources[0])
        assert (result.status, result.errors) == ("failure", {"browser": 2})
        assert (
            sample(registry, "crawler_fetch_errors_total", source="spa_shop", error_kind="browser")
            == 2
        )
        assert shop.hits["/shop"] == 0

        # A real Chromium answers at the endpoint again: the crawler reconnects (with its
        # backoff, polled here) and the source's next run renders both pages.
        front.mode = "forward"
        browser = pipeline.browser
        assert browser is not None
        while not browser.up:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        again = await pipeline.run_source(pipeline.config.sources[0])
        assert (again.status, again.errors, again.pages) == ("success", {}, 2)
        assert await browser_contexts(chromium) == []


@pytest.mark.parametrize("front", ["no_download_deny"], indirect=True)
async def test_a_context_whose_setup_fails_is_disposed(
    front: Front, shop: ShopSite, chromium: Chromium, write_config: Callable[..., Path]
) -> None:
    """Chromium creates the run's context but never hears `setDownloadBehavior` (the front
    drops it): the page fails at its timeout, and the context is gone from the browser while
    the crawler stays connected (issue 26 item 12)."""
    source = shop_source(shop, timeout="2s")
    source.pop("paginate")
    cfg = write_config(browser={"endpoint": front.endpoint}, sources=[source])
    service = Service(load_config(cfg), CollectorRegistry())
    async with service.opened() as pipeline, asyncio.timeout(HANG_GUARD):
        result = await pipeline.run_source(pipeline.config.sources[0])
        assert (result.status, result.errors) == ("failure", {"browser": 1})
        assert pipeline.browser is not None and pipeline.browser.up
        assert await browser_contexts(chromium) == []
