"""A single-page-app shop on 127.0.0.1 whose content exists only after its script runs.

`/shop?page=N` is the same HTML shell on every page: an empty `<div id="root">` and
`/app.js`. The script reads `/api/products?page=N` (XHR) and builds one `div.product` per
product (with an image, which a render source blocks) and, while there are more pages, a
`a.next` link built by script. Other routes stand for what a renderer must survive:
`/lan` (a script fetching the "LAN" host and opening a WebSocket to it), `/never` (a page
whose script never lets it settle), `/hop` (a redirect to the shop), `/worker` (a service
worker registration). `PRODUCTS` is the site's data: what the records must be exactly.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.site import Site

PER_PAGE = 4
PAGES = 3
PRODUCTS = [
    {"id": f"sku-{i:03d}", "name": f"Product {i}", "price": Decimal(f"{i}.{i % 10}9")}
    for i in range(1, PER_PAGE * PAGES + 1)
]

SHELL = """<!doctype html>
<html><head><meta charset="utf-8"><title>Shop</title></head>
<body><div id="root"></div><script src="/app.js"></script></body></html>
"""

APP = """
(async function () {
  const page = Number(new URLSearchParams(location.search).get("page") || "1");
  const data = await (await fetch("/api/products?page=" + page, {
    headers: {"Accept": "application/json"}})).json();
  const root = document.getElementById("root");
  for (const p of data.products) {
    const div = document.createElement("div");
    div.className = "product";
    div.dataset.id = p.id;
    div.innerHTML = '<h2></h2><span class="price"></span><img src="/img/' + p.id + '.png">';
    div.querySelector("h2").textContent = p.name;
    div.querySelector(".price").textContent = p.price;
    root.appendChild(div);
  }
  if (data.next) {
    const a = document.createElement("a");
    a.className = "next";
    a.href = "?page=" + data.next;
    a.textContent = "next";
    root.appendChild(a);
  }
  const done = document.createElement("p");
  done.className = "ready";
  root.appendChild(done);
})();
"""


def _shell(script: str) -> Any:
    """A handler answering the shell with `script` as its one script."""
    body = SHELL.replace("/app.js", script)

    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/html", charset="utf-8")

    return handler


class ShopSite(Site):
    """The shop: `hits` counts every path (images included), as Site does."""

    def __init__(self, host: str = "127.0.0.1", lan: Site | None = None) -> None:
        super().__init__(host)
        self.lan = lan  # the host standing for the LAN, fetched by /lan's script
        self.delay = 0.0  # seconds each XHR of products takes
        r = self.app.router
        r.add_get("/shop", _shell("/app.js"))
        r.add_get("/app.js", self._script(APP))
        r.add_get("/api/products", self._products)
        r.add_get("/static", self._static)
        r.add_get("/img/{name}", self._image)
        r.add_get("/hop", self._hop)
        r.add_get("/never", _shell("/never.js"))
        r.add_get("/never.js", self._script("setInterval(() => fetch('/hang'), 200);"))
        r.add_get("/hang", self._hang)
        r.add_get("/lan", _shell("/lan.js"))
        r.add_get("/lan.js", self._lan_script)
        r.add_get("/worker", _shell("/worker.js"))
        r.add_get("/worker.js", self._script(_WORKER))
        r.add_get("/grow", _shell("/grow.js"))  # a small page whose DOM grows past 8 KiB
        r.add_get("/grow.js", self._script("document.body.append('x'.repeat(8192));"))
        r.add_get("/sw.js", self._script("self.addEventListener('fetch', () => {});"))

    @staticmethod
    def _script(text: str) -> Any:
        async def handler(_: web.Request) -> web.Response:
            return web.Response(text=text, content_type="application/javascript")

        return handler

    async def _products(self, request: web.Request) -> web.Response:
        page = int(request.query.get("page", "1"))
        if self.delay:
            await asyncio.sleep(self.delay)
        chunk = PRODUCTS[(page - 1) * PER_PAGE : page * PER_PAGE]
        suffix = f" v{self.version}" if self.version else ""
        data = {
            "products": [
                {**p, "name": f"{p['name']}{suffix}", "price": str(p["price"])} for p in chunk
            ],
            "next": page + 1 if page < PAGES else None,
        }
        return web.Response(text=json.dumps(data), content_type="application/json")

    async def _static(self, request: web.Request) -> web.Response:
        """The shop's page as its script would build it, served ready: the same page for a
        source that does not render (the benchmark's baseline)."""
        page = int(request.query.get("page", "1"))
        chunk = PRODUCTS[(page - 1) * PER_PAGE : page * PER_PAGE]
        products = "".join(
            f'<div class="product" data-id="{p["id"]}"><h2>{p["name"]}</h2>'
            f'<span class="price">{p["price"]}</span><img src="/img/{p["id"]}.png"></div>'
            for p in chunk
        )
        body = SHELL.replace('<div id="root"></div>', f'<div id="root">{products}</div>')
        return web.Response(text=body, content_type="text/html", charset="utf-8")

    async def _image(self, _: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG\r\n\x1a\n", content_type="image/png")

    async def _hop(self, _: web.Request) -> web.Response:
        raise web.HTTPFound("shop?page=2")  # relative: resolved as a browser does

    async def _hang(self, _: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response(text="late")

    async def _lan_script(self, _: web.Request) -> web.Response:
        assert self.lan is not None
        text = (
            f"fetch('{self.lan.base}/secret').catch(() => {{}});\n"
            f"try {{ new WebSocket('ws://{self.lan.host}:{self.lan.port}/ws'); }} catch (e) {{}}\n"
            + APP
        )
        return web.Response(text=text, content_type="application/javascript")


_WORKER = (
    "const out = document.createElement('p'); out.className = 'sw';"
    "out.textContent = 'serviceWorker' in navigator ? 'present' : 'absent';"
    "document.body.appendChild(out);"
    "if ('serviceWorker' in navigator) navigator.serviceWorker.register('/sw.js');"
)


class LanHost(Site):
    """The host standing for the LAN (127.0.0.2): it must never be hit; it answers HTTP and
    WebSocket so a hit would be visible."""

    def __init__(self) -> None:
        super().__init__("127.0.0.2")
        self.app.router.add_get("/secret", self._secret)
        self.app.router.add_get("/ws", self._ws)

    async def _secret(self, _: web.Request) -> web.Response:
        return web.Response(text="router admin", content_type="text/plain")

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()
        return ws
