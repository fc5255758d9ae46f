"""A site with the shapes real sources have: a paginated shop catalogue with detail pages,
paginated JSON APIs, a sitemap index and feeds — plus the traps (a next link that loops back,
endless pagination, a page that answers every page number alike, links to another host, a
duplicate link, a link robots.txt disallows). `hits` (from `Site`) counts requests per path.

Catalogue: `/cat/page-{1..3}.html`, 10 products each (`PRODUCTS` in all), detail pages
`/p/{n}.html` with a title and a UPC. JSON: 30 items over 3 pages, then an empty page, by
cursor (`/api/cursor`), next URL (`/api/next`), Link header (`/api/link`) and page number
(`/api/pages`). Sitemap: `/sitemap_index.xml` → `/sitemaps/posts.xml.gz` (gzipped) and
`/sitemaps/more.xml` (an index again) → `/sitemaps/pages.xml`; posts `/posts/{n}`. Feeds:
`/feed.rss` (RSS 2.0) and `/feed.atom` (Atom), entries linking to `/articles/{n}`.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from aiohttp import web

from tests.site import Site

PAGES, PER_PAGE = 3, 10
PRODUCTS = PAGES * PER_PAGE
API_ITEMS = 30
POSTS = 6
ARTICLES = 3
SM = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def product(n: int) -> dict[str, str]:
    return {"title": f"Book {n}", "upc": f"upc-{n:04d}"}


class CatalogueSite(Site):
    """The catalogue site; `other` is the base URL of a host that must never be requested."""

    def __init__(self, other: str = "http://127.0.0.2:9") -> None:
        super().__init__()
        self.other = other
        # Per-post <lastmod> in the sitemap; a test moves one to make it "changed".
        self.lastmod = {n: "2026-11-01T00:00:00Z" for n in range(POSTS)}
        r = self.app.router
        r.add_get("/robots.txt", self._robots)
        r.add_get("/cat/page-{n}.html", self._catalogue)
        r.add_get("/p/{n}.html", self._detail)
        r.add_get("/private/{n}.html", self._detail)
        r.add_get("/loop/page-{n}.html", self._looping)
        r.add_get("/endless/page-{n}.html", self._endless)
        r.add_get("/same", self._same)
        r.add_get("/api/cursor", self._api_cursor)
        r.add_get("/api/next", self._api_next)
        r.add_get("/api/link", self._api_link)
        r.add_get("/api/pages", self._api_pages)
        r.add_get("/sitemap_index.xml", self._sitemap_index)
        r.add_get("/sitemaps/posts.xml.gz", self._sitemap_posts)
        r.add_get("/sitemaps/more.xml", self._sitemap_more)
        r.add_get("/sitemaps/pages.xml", self._sitemap_pages)
        r.add_get("/posts/{n}", self._post)
        r.add_get("/feed.rss", self._rss)
        r.add_get("/feed.atom", self._atom)
        r.add_get("/articles/{n}", self._article)

    # -- HTML catalogue -------------------------------------------------------------------

    async def _robots(self, request: web.Request) -> web.Response:
        return web.Response(
            text=f"User-agent: *\nDisallow: /private/\nSitemap: {self.base}/sitemap_index.xml\n"
        )

    async def _catalogue(self, request: web.Request) -> web.Response:
        page = int(request.match_info["n"])
        if not 1 <= page <= PAGES:
            raise web.HTTPNotFound()
        pods = [
            f"<article class='product_pod'><h3><a href='../p/{n}.html'>{product(n)['title']}"
            "</a></h3></article>"
            for n in range((page - 1) * PER_PAGE, page * PER_PAGE)
        ]
        if page == 2:  # a duplicate link, a link to another host, and one robots.txt forbids
            pods.append(
                "<article class='product_pod'><h3><a href='/p/0.html'>again</a></h3></article>"
            )
            pods.append(
                f"<article class='product_pod'><h3><a href='{self.other}/p/1.html'>x</a></h3>"
                "</article>"
            )
        if page == 3:
            pods.append(
                "<article class='product_pod'><h3><a href='/private/1.html'>p</a></h3></article>"
            )
        nxt = (
            f"<li class='next'><a href='page-{page + 1}.html'>next</a></li>" if page < PAGES else ""
        )
        return _html(f"<h1>Page {page}</h1>{''.join(pods)}<ul class='pager'>{nxt}</ul>")

    async def _detail(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        p = product(n)
        return _html(
            f"<h1>{p['title']}</h1><table class='table'><tr><th>UPC</th><td>{p['upc']}</td></tr>"
            f"<tr><th>Price</th><td>£{10 + n}.00</td></tr></table>"
            f"<p class='edition'>v{self.version}</p>"
        )

    async def _looping(self, request: web.Request) -> web.Response:
        page = int(request.match_info["n"])  # 1 → 2 → 3 → 1 …
        items = "".join(f"<div class='item'>loop {page}-{i}</div>" for i in range(3))
        nxt = page % 3 + 1
        return _html(f"{items}<li class='next'><a href='page-{nxt}.html'>next</a></li>")

    async def _endless(self, request: web.Request) -> web.Response:
        page = int(request.match_info["n"])
        items = "".join(f"<div class='item'>endless {page}-{i}</div>" for i in range(3))
        return _html(f"{items}<li class='next'><a href='page-{page + 1}.html'>next</a></li>")

    async def _same(self, request: web.Request) -> web.Response:
        # Every page number answers the same body: pages never end, only the body repeats.
        return _html("<div class='item'>the one page</div>")

    # -- JSON APIs ------------------------------------------------------------------------

    def _items(self, page: int) -> list[dict[str, Any]]:
        start = (page - 1) * PER_PAGE
        return [
            {"id": n, "name": f"item {n}"} for n in range(start, min(start + PER_PAGE, API_ITEMS))
        ]

    async def _api_cursor(self, request: web.Request) -> web.Response:
        cursor = request.query.get("cursor")
        page = int(cursor[1:]) if cursor else 1
        nxt = f"c{page + 1}" if page * PER_PAGE < API_ITEMS else None
        return _json({"data": self._items(page), "meta": {"next_cursor": nxt}})

    async def _api_next(self, request: web.Request) -> web.Response:
        page = int(request.query.get("page", "1"))
        nxt = f"/api/next?page={page + 1}" if page * PER_PAGE < API_ITEMS else None
        return _json({"data": self._items(page), "links": {"next": nxt}})

    async def _api_link(self, request: web.Request) -> web.Response:
        page = int(request.query.get("page", "1"))
        headers = {}
        if page * PER_PAGE < API_ITEMS:
            headers["Link"] = f'</api/link?page={page + 1}>; rel="next", </api/link>; rel="first"'
        return _json({"data": self._items(page)}, headers)

    async def _api_pages(self, request: web.Request) -> web.Response:
        # No "next" at all: the client counts pages until one is empty.
        return _json({"data": self._items(int(request.query.get("page", "1")))})

    # -- sitemaps -------------------------------------------------------------------------

    async def _sitemap_index(self, request: web.Request) -> web.Response:
        return _xml(
            f"<sitemapindex {SM}>"
            f"<sitemap><loc>{self.base}/sitemaps/posts.xml.gz</loc>"
            "<lastmod>2026-11-01</lastmod></sitemap>"
            f"<sitemap><loc>{self.base}/sitemaps/more.xml</loc></sitemap></sitemapindex>"
        )

    async def _sitemap_posts(self, request: web.Request) -> web.Response:
        rows = "".join(
            f"<url><loc>{self.base}/posts/{n}</loc><lastmod>{self.lastmod[n]}</lastmod></url>"
            for n in range(POSTS)
        )
        body = gzip.compress(f"<urlset {SM}>{rows}</urlset>".encode())
        return web.Response(body=body, content_type="application/x-gzip")

    async def _sitemap_more(self, request: web.Request) -> web.Response:
        return _xml(
            f"<sitemapindex {SM}><sitemap><loc>{self.base}/sitemaps/pages.xml</loc></sitemap>"
            "</sitemapindex>"
        )

    async def _sitemap_pages(self, request: web.Request) -> web.Response:
        return _xml(
            f"<urlset {SM}><url><loc>{self.base}/about</loc></url>"
            f"<url><loc>{self.base}/posts/{POSTS - 1}</loc>"  # listed twice
            f"<lastmod>{self.lastmod[POSTS - 1]}</lastmod></url></urlset>"
        )

    async def _post(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        return _html(f"<h1>Post {n}</h1><article>Body of post {n}</article>")

    # -- feeds ----------------------------------------------------------------------------

    async def _rss(self, request: web.Request) -> web.Response:
        items = "".join(
            f"<item><guid>a-{n}</guid><link>{self.base}/articles/{n}</link>"
            f"<title>Article {n}</title><pubDate>Sun, 22 Nov 2026 1{n}:00:00 +0100</pubDate>"
            f"<description>Summary {n}</description><category>c{n}</category></item>"
            for n in range(ARTICLES)
        )
        return web.Response(
            text=f"<?xml version='1.0'?><rss version='2.0'><channel><title>News</title>{items}"
            "</channel></rss>",
            content_type="application/rss+xml",
        )

    async def _atom(self, request: web.Request) -> web.Response:
        entries = "".join(
            f"<entry><id>urn:art:{n}</id><title>Article {n}</title>"
            f"<link href='{self.base}/articles/{n}'/><updated>2026-11-22T1{n}:00:00-02:00</updated>"
            f"<author><name>Ann</name></author></entry>"
            for n in range(ARTICLES)
        )
        return web.Response(
            text="<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'>"
            f"<title>News</title><id>urn:news</id><updated>2026-11-22T12:00:00Z</updated>{entries}"
            "</feed>",
            content_type="application/atom+xml",
        )

    async def _article(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        return _html(f"<h1>Article {n}</h1><div class='body'>Full text {n}</div>")


def _html(body: str) -> web.Response:
    return web.Response(
        text=f"<html><body>{body}</body></html>", content_type="text/html", charset="utf-8"
    )


def _json(data: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(data), content_type="application/json", headers=headers)


def _xml(body: str) -> web.Response:
    return web.Response(
        text=f"<?xml version='1.0' encoding='UTF-8'?>{body}", content_type="application/xml"
    )
