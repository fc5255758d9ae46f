"""A shop on 127.0.0.1 for the field pipeline and request options (issue 12's two examples).

* `/p/<i>`: a product page with a price in prose, a relative link, a naive time, a stock count,
  schema.org JSON-LD and a `__NEXT_DATA__` script. Page 3 has no price (a required field
  missing); page 4's stock reads "lots" (a value that does not convert to `int`).
* `POST /api/search`: a JSON API answering only with `Authorization: Bearer <token>` and
  `X-Session: <session>` (from a header file the test rewrites between runs), else 401; the
  body must be the configured JSON. `prices` can be changed between runs (history).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.site import Site

PRODUCTS = 5


def product_page(i: int) -> bytes:
    price = "" if i == 3 else f'<p class="price">Now only £1.{i}34,5{i} incl. VAT</p>'
    stock = "lots" if i == 4 else f"{10 * i}"
    ld = {
        "@context": "https://schema.org",
        "@type": "Product",
        "name": f"Product {i}",
        "offers": {"@type": "Offer", "sku": f"SKU-{i}", "price": f"{1000 + i}.50"},
    }
    nxt = {"props": {"pageProps": {"item": {"state": "in_stock" if i % 2 else "sold_out"}}}}
    return f"""<!doctype html><html><head><title>P{i}</title>
<script type="application/ld+json">{json.dumps(ld)}</script>
<script id="__NEXT_DATA__" type="application/json">{json.dumps(nxt)}</script>
</head><body>
<h1>
    Product
    number {i}
</h1>
{price}
<a class="more" href="../more/{i}.html">more</a>
<time datetime="2026-07-0{i}T12:30:00">July</time>
<span class="stock">{stock}</span>
</body></html>""".encode()


class ShopSite(Site):
    """The quote site plus the shop's routes. `api_hits` counts API answers by status."""

    def __init__(self, token: str, session: str) -> None:
        super().__init__()
        self.token, self.session = token, session
        self.prices = {f"A{j}": f"{j}.99" for j in range(3)}
        self.seen_bodies: list[Any] = []
        self.agents: list[str] = []  # User-Agent of each product page request
        self.api_status: list[int] = []
        self.app.router.add_get("/p/{i}", self._product)
        self.app.router.add_post("/api/search", self._search)

    async def _product(self, request: web.Request) -> web.Response:
        self.agents.append(request.headers.get("User-Agent", ""))
        return web.Response(
            body=product_page(int(request.match_info["i"])),
            content_type="text/html",
            charset="utf-8",
        )

    async def _search(self, request: web.Request) -> web.Response:
        ok = (
            request.headers.get("Authorization") == f"Bearer {self.token}"
            and request.headers.get("X-Session") == self.session
        )
        if not ok:
            self.api_status.append(401)
            return web.Response(status=401, text="who are you?")
        self.seen_bodies.append(await request.json())
        self.api_status.append(200)
        results = [{"id": k, "price": {"amount": v}} for k, v in sorted(self.prices.items())]
        return web.json_response({"results": results})


class ForwardProxy(Site):
    """A plain-HTTP forward proxy on 127.0.0.1: it answers absolute-form requests by fetching
    them itself. `proxied` lists the URLs it forwarded, `auth` the Proxy-Authorization seen."""

    def __init__(self) -> None:
        super().__init__()
        self.proxied: list[str] = []
        self.auth: list[str] = []
        self.app.router.add_route("*", "/{tail:.*}", self._forward)

    async def _forward(self, request: web.Request) -> web.Response:
        import aiohttp

        target = f"http://{request.headers['Host']}{request.rel_url}"
        self.proxied.append(target)
        self.auth.append(request.headers.get("Proxy-Authorization", ""))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, target, headers=headers, data=await request.read()
            ) as resp,
        ):
            body = await resp.read()
            return web.Response(
                status=resp.status,
                body=body,
                headers={"Content-Type": resp.headers.get("Content-Type", "text/html")},
            )


_HOP = frozenset(
    {"host", "proxy-authorization", "proxy-connection", "connection", "content-length"}
)
