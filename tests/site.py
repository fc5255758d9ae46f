"""A real aiohttp site on 127.0.0.1, run on its own thread, as the crawl target in tests.

Pages are generated deterministically: `/page/<i>` has 20 quotes (the bench site's markup),
`/api/<i>` the same as JSON. Tests switch behaviour at run time (`site.fail = True`, ...) and
add their own routes before `start()`. `StaticResolver` names test hosts (`shop.example.co.uk`
on 127.0.0.1) without DNS.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from tests.helpers import free_port

ITEMS_PER_PAGE = 20


def items(page: int, version: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "id": f"p{page}-q{j}",
            "text": f"Quote {j} of page {page} v{version}",
            "author": f"Author {j % 5}",
            "tags": [f"t{j % 3}", f"t{j % 4 + 3}"],
        }
        for j in range(ITEMS_PER_PAGE)
    ]


def html_page(page: int, version: int = 0) -> bytes:
    parts = [f"<html><head><title>Page {page}</title></head><body><div class='container'>"]
    for it in items(page, version):
        tags = "".join(f"<a class='tag' href='/tag/{t}'>{t}</a>" for t in it["tags"])
        parts.append(
            f"<div class='quote' data-id='{it['id']}'><span class='text'>{it['text']}</span>"
            f"<span>by <small class='author'>{it['author']}</small></span>"
            f"<div class='tags'>{tags}</div></div>"
        )
    parts.append("</div></body></html>")
    return "".join(parts).encode()


class Site:
    """The test site. `hits` counts requests per path."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host  # any 127.0.0.x: a second "host" for off-host tests
        self.port = free_port()
        self.app = web.Application()
        self.hits: Counter[str] = Counter()
        self.fail = False  # every page answers 500 while True
        self.version = 0  # bump to change every record's text
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            self.hits[request.path] += 1
            return await handler(request)  # type: ignore[no-any-return]

        self.app.middlewares.append(count)
        self.app.router.add_get("/page/{i}", self._page)
        self.app.router.add_get("/api/{i}", self._api)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _page(self, request: web.Request) -> web.Response:
        if self.fail:
            return web.Response(status=500, text="down")
        return web.Response(
            body=html_page(int(request.match_info["i"]), self.version),
            content_type="text/html",
            charset="utf-8",
        )

    async def _api(self, request: web.Request) -> web.Response:
        if self.fail:
            return web.Response(status=500, text="down")
        i = int(request.match_info["i"])
        return web.Response(
            text=json.dumps({"page": i, "items": items(i, self.version)}),
            content_type="application/json",
        )

    def start(self) -> Site:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._runner = web.AppRunner(self.app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.TCPSite(self._runner, self.host, self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="test-site", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("test site did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def html_source(site: Site, name: str, pages: int, extra_fields: str = "") -> str:
    """A `sources:` item (YAML) reading the site's HTML pages 0 … pages-1 into id, text, author
    and tags, keyed by id; `extra_fields` are further `name: selector` lines."""
    extra = "".join(f"\n      {line}" for line in extra_fields.splitlines())
    return f"""\
  - name: {name}
    every: 1h
    urls: ["{site.base}/page/{{0..{pages - 1}}}"]
    items: div.quote
    fields:
      id: "xpath:./@data-id"
      text: span.text::text
      author: small.author::text
      tags: {{selector: "a.tag::text", all: true}}{extra}
    key: [id]
"""


def quote_source(name: str, urls: list[str], **extra: Any) -> dict[str, Any]:
    """A source mapping (for `write_config`) reading quote texts, keyed by the text; `extra`
    adds or replaces keys (None removes one)."""
    source = {
        "name": name,
        "every": "1h",
        "urls": urls,
        "items": "div.quote",
        "fields": {"text": "span.text::text"},
        "key": ["text"],
        **extra,
    }
    return {k: v for k, v in source.items() if v is not None}


class StaticResolver(AbstractResolver):
    """DNS for the test: names to addresses from a dict, nothing from the network."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"{host}: no such test host")
        address = self.table[host]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass
