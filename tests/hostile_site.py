"""A hostile web site on 127.0.0.1 for the fetch-layer tests: every way a page can hurt us.

Built on tests/site.py's `Site` (same thread model, `hits` counts requests per path). Each case
has its own path; tests tune behaviour through attributes before or between fetches.

    /robots.txt          `robots` text (or `robots_status`), Disallow: /private
    /private/page        never to be requested (robots.txt disallows it)
    /slow                sleeps `slow_for` seconds (1) before answering
    /drip                a byte every 0.1 s for 10 s: each read is quick, the whole is not
    /flaky               answers 500 `flaky_failures` times, then a page
    /limited             answers 429 with `Retry-After: <retry_after>` once, then a page
    /unavailable         answers 503 with `Retry-After: <retry_after>` once, then a page
    /huge                200 MB of body with a Content-Length
    /huge-chunked        200 MB of body, chunked (no length known up front)
    /bomb                ~1 MB of gzip that expands to 1 GiB
    /malformed           broken HTML
    /invalid-json        `application/json` that is not JSON
    /wrong-type          an image where a page is expected
    /loop                redirects to /loop2, which redirects back to /loop
    /latin1              ISO-8859-1 text declared in the header
    /latin1-meta         ISO-8859-1 text declared only in <meta>
    /nocharset           UTF-8 text with no charset declared anywhere
    /reset               promises 100 kB, sends 10 kB, then drops the connection
    /etag                ETag "v<etag_version>"; 304 when If-None-Match matches
    /same                the same body every time, no validators (hash-based not-modified)
    /down                503 while `down` is true, else a page
"""

from __future__ import annotations

import asyncio
import time
import zlib
from functools import lru_cache

from aiohttp import web

from tests.site import Site, html_page

MB = 10**6
HUGE_BYTES = 200 * MB
BOMB_EXPANDS_TO = 2**30
CAFE_LATIN1 = "<html><body><p class='t'>Café crème, déjà vu</p></body></html>"


@lru_cache(maxsize=1)
def bomb() -> bytes:
    """gzip of 1 GiB of zeros (~1 MB), built once per process (~2 s)."""
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    zeros = bytes(16 * 2**20)
    parts = [c.compress(zeros) for _ in range(BOMB_EXPANDS_TO // len(zeros))]
    parts.append(c.flush())
    return b"".join(parts)


class HostileSite(Site):
    """The hostile cases; `times[path]` records when each request arrived (monotonic)."""

    def __init__(self) -> None:
        super().__init__()
        self.robots: str | None = "User-agent: *\nDisallow: /private\n"
        self.robots_status = 200
        self.slow_for = 1.0
        self.flaky_failures = 1
        self.retry_after = "1"
        self.etag_version = 1
        self.down = False
        self.times: dict[str, list[float]] = {}
        self.seen_headers: dict[str, list[dict[str, str]]] = {}

        @web.middleware
        async def record(request: web.Request, handler: object) -> web.StreamResponse:
            self.times.setdefault(request.path, []).append(time.monotonic())
            self.seen_headers.setdefault(request.path, []).append(dict(request.headers))
            return await handler(request)  # type: ignore[operator,no-any-return]

        self.app.middlewares.append(record)
        r = self.app.router
        r.add_get("/robots.txt", self._robots)
        r.add_get("/private/page", self._ok)
        r.add_get("/ok", self._ok)
        r.add_get("/ok/{i}", self._ok)
        r.add_get("/slow", self._slow)
        r.add_get("/drip", self._drip)
        r.add_get("/flaky", self._flaky)
        r.add_get("/limited", self._limited)
        r.add_get("/unavailable", self._unavailable)
        r.add_get("/huge", self._huge)
        r.add_get("/huge-chunked", self._huge)
        r.add_get("/bomb", self._bomb)
        r.add_get("/malformed", self._malformed)
        r.add_get("/invalid-json", self._invalid_json)
        r.add_get("/wrong-type", self._wrong_type)
        r.add_get("/loop", self._redirect)
        r.add_get("/loop2", self._redirect)
        r.add_get("/latin1", self._latin1)
        r.add_get("/latin1-meta", self._latin1_meta)
        r.add_get("/nocharset", self._nocharset)
        r.add_get("/reset", self._reset)
        r.add_get("/etag", self._etag)
        r.add_get("/same", self._same)
        r.add_get("/down", self._down)

    @staticmethod
    def _html() -> web.Response:
        return web.Response(body=html_page(1), content_type="text/html", charset="utf-8")

    async def _robots(self, request: web.Request) -> web.Response:
        if self.robots_status != 200 or self.robots is None:
            return web.Response(status=self.robots_status, text="no")
        return web.Response(text=self.robots, content_type="text/plain")

    async def _ok(self, request: web.Request) -> web.Response:
        return self._html()

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.slow_for)
        return self._html()

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        try:
            await resp.prepare(request)
            for _ in range(100):
                await resp.write(b" ")
                await asyncio.sleep(0.1)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def _flaky(self, request: web.Request) -> web.Response:
        if self.hits[request.path] <= self.flaky_failures:
            return web.Response(status=500, text="oops")
        return self._html()

    async def _limited(self, request: web.Request) -> web.Response:
        if self.hits[request.path] == 1:
            return web.Response(
                status=429, text="slow down", headers={"Retry-After": self.retry_after}
            )
        return self._html()

    async def _unavailable(self, request: web.Request) -> web.Response:
        if self.hits[request.path] == 1:
            return web.Response(status=503, text="later", headers={"Retry-After": self.retry_after})
        return self._html()

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        if request.path == "/huge":
            resp.content_length = HUGE_BYTES
        chunk = b" " * MB
        try:
            await resp.prepare(request)
            for _ in range(HUGE_BYTES // MB):
                await resp.write(chunk)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):  # the client hung up at its cap: expected
            pass
        return resp

    async def _bomb(self, request: web.Request) -> web.Response:
        return web.Response(
            body=bomb(), headers={"Content-Type": "text/html", "Content-Encoding": "gzip"}
        )

    async def _malformed(self, request: web.Request) -> web.Response:
        body = (
            "<html><head><title>x</title><body><div class='quote'><span class='text'>Broken"
            " <<<>>></div></span><div class='quote'><span class='text'>Still here</p>\x00"
            "<small class='author'>&bogus; &#xZZ; <![CDATA[ </html></html><div class='quote"
        )
        return web.Response(text=body, content_type="text/html")

    async def _invalid_json(self, request: web.Request) -> web.Response:
        return web.Response(text='{"items": [1, 2,, ', content_type="application/json")

    async def _wrong_type(self, request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG\r\n\x1a\n" + bytes(100), content_type="image/png")

    async def _redirect(self, request: web.Request) -> web.Response:
        target = "/loop2" if request.path == "/loop" else "/loop"
        raise web.HTTPFound(target)

    async def _latin1(self, request: web.Request) -> web.Response:
        return web.Response(
            body=CAFE_LATIN1.encode("iso-8859-1"), content_type="text/html", charset="iso-8859-1"
        )

    async def _latin1_meta(self, request: web.Request) -> web.Response:
        body = CAFE_LATIN1.replace(
            "<html>",
            "<html><head><meta http-equiv='Content-Type' "
            "content='text/html; charset=ISO-8859-1'></head>",
        )
        return web.Response(body=body.encode("iso-8859-1"), headers={"Content-Type": "text/html"})

    async def _nocharset(self, request: web.Request) -> web.Response:
        return web.Response(body=CAFE_LATIN1.encode(), headers={"Content-Type": "text/html"})

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        resp.content_length = 100_000
        await resp.prepare(request)
        await resp.write(b"<html>" + b" " * 10_000)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return resp

    async def _etag(self, request: web.Request) -> web.Response:
        tag = f'"v{self.etag_version}"'
        if request.headers.get("If-None-Match") == tag:
            return web.Response(status=304, headers={"ETag": tag})
        return web.Response(
            body=html_page(1, self.etag_version),
            content_type="text/html",
            charset="utf-8",
            headers={"ETag": tag, "Last-Modified": "Sat, 21 Nov 2026 10:00:00 GMT"},
        )

    async def _same(self, request: web.Request) -> web.Response:
        return self._html()

    async def _down(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503, text="down")
        return self._html()
