"""Sources that reach their data: pagination, listing → detail pages, sitemaps and feeds, run
against the local catalogue site (tests/catalogue_site.py) with its server-side hit counters,
through the real fetch layer, into the embedded store (and PostgreSQL for the crash case)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from crawler.config.root import load_config
from crawler.service import Service
from tests.catalogue_site import API_ITEMS, PER_PAGE, POSTS, PRODUCTS, CatalogueSite
from tests.crawler_proc import run_cli
from tests.site import Site


@pytest.fixture
def other() -> Iterator[Site]:
    """Another host (127.0.0.2): the catalogue links to it, and nothing may request it."""
    s = Site(host="127.0.0.2").start()
    yield s
    s.stop()


@pytest.fixture
def cat(other: Site) -> Iterator[CatalogueSite]:
    s = CatalogueSite(other=other.base).start()
    yield s
    s.stop()


def write(tmp_path: Path, sources: str, fetch: str = "robots: false") -> Path:
    path = tmp_path / "crawler.yaml"
    path.write_text(
        f"""\
instance: sources-test
state_dir: {tmp_path}/var
log_level: DEBUG
fetch: {{politeness_delay: 0s, {fetch}, retry: {{attempts: 1}}}}
sources:
{sources}"""
    )
    return path


def stored(tmp_path: Path, source: str) -> dict[str, dict[str, Any]]:
    conn = sqlite3.connect(tmp_path / "var" / "crawler.sqlite")
    try:
        rows = conn.execute("select key, data from scraped_data where source = ?", (source,))
        return {key: json.loads(data) for key, data in rows.fetchall()}
    finally:
        conn.close()


async def run_once(path: Path, *names: str) -> tuple[list[Any], CollectorRegistry]:
    registry = CollectorRegistry()
    results = await Service(load_config(path), registry).once(list(names) or None)
    return results, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    v = registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


BOOKS = """\
  - name: books
    every: 6h
    urls: ["{base}/cat/page-1.html"]
    paginate: {{next: "li.next a::attr(href)", max_pages: 50}}
    follow:
      links: "article.product_pod h3 a::attr(href)"
      max_per_run: 1000
      refresh_after: 7d
    fields: {{title: "h1::text", upc: "table tr:nth-child(1) td::text"}}
    key: [upc]
"""


async def test_catalogue_paginated_followed_stored_once_and_fresh_on_the_second_run(
    cat: CatalogueSite, other: Site, tmp_path: Path
):
    path = write(tmp_path, BOOKS.format(base=cat.base), fetch="robots: true")
    [result], reg = await run_once(path)
    assert result.status == "success", result.error
    records = stored(tmp_path, "books")
    assert records == {
        f"upc-{n:04d}": {"title": f"Book {n}", "upc": f"upc-{n:04d}"} for n in range(PRODUCTS)
    }
    # Every listing and every detail page once; the duplicate link once; the other host and
    # the page robots.txt forbids never.
    assert [cat.hits[f"/cat/page-{n}.html"] for n in (1, 2, 3)] == [1, 1, 1]
    assert all(cat.hits[f"/p/{n}.html"] == 1 for n in range(PRODUCTS))
    assert cat.hits["/private/1.html"] == 0 and sum(other.hits.values()) == 0
    v = lambda name, **kw: value(reg, name, source="books", **kw)  # noqa: E731
    assert v("crawler_source_pages_total", role="listing") == 3
    assert v("crawler_source_pages_total", role="detail") == PRODUCTS
    assert v("crawler_source_links_found_total") == PRODUCTS + 3
    assert v("crawler_source_links_followed_total") == PRODUCTS + 1  # + the robots-denied one
    assert v("crawler_source_links_skipped_total", reason="seen") == 1
    assert v("crawler_source_links_skipped_total", reason="off_host") == 1
    assert v("crawler_fetch_errors_total", error_kind="robots_denied") == 1
    assert v("crawler_source_bound_hits_total", bound="max_pages") == 0
    assert v("crawler_records_stored_total", backend="sqlite") == PRODUCTS

    # Second run, inside refresh_after: no detail page is requested. Listings 1 and 2 are
    # unchanged (their links are not read again; pagination goes on from the stored next
    # page); listing 3 had a failed link, so its links are read again and found fresh.
    [again], reg = await run_once(path)
    assert again.status == "success", again.error
    assert all(cat.hits[f"/p/{n}.html"] == 1 for n in range(PRODUCTS))
    assert [cat.hits[f"/cat/page-{n}.html"] for n in (1, 2, 3)] == [2, 2, 2]
    v = lambda name, **kw: value(reg, name, source="books", **kw)  # noqa: E731
    assert v("crawler_not_modified_total") == 2
    assert v("crawler_source_links_skipped_total", reason="fresh") == PER_PAGE
    assert len(stored(tmp_path, "books")) == PRODUCTS


LOOPS = """\
  - name: loop
    every: 1h
    urls: ["{base}/loop/page-1.html"]
    paginate: {{next: "li.next a::attr(href)", max_pages: 10}}
    items: div.item
    fields: {{t: "::text"}}
  - name: endless
    every: 1h
    urls: ["{base}/endless/page-1.html"]
    paginate: {{next: "li.next a::attr(href)", max_pages: 5}}
    items: div.item
    fields: {{t: "::text"}}
  - name: same
    every: 1h
    urls: ["{base}/same?page=1"]
    paginate: {{page_param: page, max_pages: 10}}
    items: div.item
    fields: {{t: "::text"}}
"""


async def test_pagination_stops_at_a_loop_at_its_bound_and_at_a_repeated_body(
    cat: CatalogueSite, tmp_path: Path
):
    path = write(tmp_path, LOOPS.format(base=cat.base))
    results, reg = await run_once(path)
    assert [(r.source, r.status, r.pages) for r in results] == [
        ("loop", "success", 3),
        ("endless", "success", 5),
        ("same", "success", 2),
    ]
    assert [cat.hits[f"/loop/page-{n}.html"] for n in (1, 2, 3)] == [1, 1, 1]
    assert [cat.hits[f"/endless/page-{n}.html"] for n in range(1, 8)] == [1] * 5 + [0, 0]
    assert cat.hits["/same"] == 2
    assert value(reg, "crawler_source_bound_hits_total", source="endless", bound="max_pages") == 1
    assert value(reg, "crawler_source_bound_hits_total", source="loop", bound="max_pages") == 0
    assert len(stored(tmp_path, "endless")) == 15


APIS = """\
  - name: cursor
    every: 1h
    urls: ["{base}/api/cursor?limit=10"]
    parser: json
    paginate: {{cursor: "meta.next_cursor", param: cursor, max_pages: 100}}
    items: data
    fields: {{id: id, name: name}}
    key: [id]
  - name: nexturl
    every: 1h
    urls: ["{base}/api/next"]
    parser: json
    paginate: {{next: "links.next", max_pages: 100}}
    items: data
    fields: {{id: id, name: name}}
    key: [id]
  - name: linkheader
    every: 1h
    urls: ["{base}/api/link"]
    parser: json
    paginate: {{link_header: next, max_pages: 100}}
    items: data
    fields: {{id: id, name: name}}
    key: [id]
  - name: pagenumber
    every: 1h
    urls: ["{base}/api/pages"]
    parser: json
    paginate: {{page_param: page, max_pages: 100}}
    items: data
    fields: {{id: id, name: name}}
    key: [id]
"""


async def test_json_pagination_of_every_kind(cat: CatalogueSite, tmp_path: Path):
    path = write(tmp_path, APIS.format(base=cat.base))
    results, _ = await run_once(path)
    assert [(r.source, r.status, r.records) for r in results] == [
        ("cursor", "success", API_ITEMS),
        ("nexturl", "success", API_ITEMS),
        ("linkheader", "success", API_ITEMS),
        ("pagenumber", "success", API_ITEMS),
    ]
    for source in ("cursor", "nexturl", "linkheader", "pagenumber"):
        assert sorted(stored(tmp_path, source)) == sorted(str(i) for i in range(API_ITEMS))
    # Three pages each; the page-number API a fourth, empty one that ends it.
    assert [cat.hits[p] for p in ("/api/cursor", "/api/next", "/api/link", "/api/pages")] == [
        3,
        3,
        3,
        4,
    ]


SITEMAP = """\
  - name: blog
    every: 1d
    sitemap: {{url: "{base}/sitemap_index.xml", include: ["/posts/"], max_urls: 5000, changed_only: true}}
    fields: {{title: "h1::text", body: "article::text"}}
    key: [title]
  - name: fromrobots
    every: 1d
    sitemap: {{url: robots, site: "{base}", max_urls: 3}}
    fields: {{title: "h1::text"}}
"""


async def test_sitemap_index_gzip_and_changed_only(cat: CatalogueSite, tmp_path: Path):
    path = write(tmp_path, SITEMAP.format(base=cat.base), fetch="robots: true")
    [result], reg = await run_once(path, "blog")
    assert result.status == "success", result.error
    assert sorted(stored(tmp_path, "blog")) == sorted(f"Post {n}" for n in range(POSTS))
    assert cat.hits["/sitemaps/posts.xml.gz"] == 1 and cat.hits["/sitemaps/pages.xml"] == 1
    assert all(cat.hits[f"/posts/{n}"] == 1 for n in range(POSTS))  # listed twice, fetched once
    assert cat.hits["/about"] == 0  # not included
    v = lambda name, **kw: value(reg, name, source="blog", **kw)  # noqa: E731
    assert v("crawler_source_pages_total", role="sitemap") == 4
    assert v("crawler_source_links_skipped_total", reason="excluded") == 1
    assert v("crawler_source_links_skipped_total", reason="seen") == 1

    # One post changes after its last fetch: only it is fetched again.
    soon = datetime.now(timezone.utc) + timedelta(minutes=5)
    cat.lastmod[3] = soon.strftime("%Y-%m-%dT%H:%M:%SZ")
    [again], reg = await run_once(path, "blog")
    assert again.status == "success", again.error
    assert [cat.hits[f"/posts/{n}"] for n in range(POSTS)] == [1, 1, 1, 2, 1, 1]
    assert value(reg, "crawler_source_links_skipped_total", source="blog", reason="fresh") == 5

    # `url: robots` reads the Sitemap: lines of robots.txt; max_urls cuts and is counted.
    [limited], reg = await run_once(path, "fromrobots")
    assert limited.status == "success" and len(stored(tmp_path, "fromrobots")) == 3
    assert value(reg, "crawler_source_bound_hits_total", source="fromrobots", bound="max_urls") == 1


FEEDS = """\
  - name: rss
    every: 15m
    urls: ["{base}/feed.rss"]
    parser: feed
    key: [id]
  - name: atom
    every: 15m
    urls: ["{base}/feed.atom"]
    parser: feed
    follow: {{links: link, max_per_run: 10}}
    fields: {{title: "h1::text", text: "div.body::text"}}
    key: [title]
"""


async def test_rss_records_and_atom_follow(cat: CatalogueSite, tmp_path: Path):
    path = write(tmp_path, FEEDS.format(base=cat.base))
    results, reg = await run_once(path)
    assert [(r.source, r.status) for r in results] == [("rss", "success"), ("atom", "success")]
    rss = stored(tmp_path, "rss")
    assert rss["a-1"] == {
        "id": "a-1",
        "link": f"{cat.base}/articles/1",
        "title": "Article 1",
        "published": "2026-11-22T10:00:00Z",
        "updated": "2026-11-22T10:00:00Z",
        "summary": "Summary 1",
        "author": None,
        "tags": ["c1"],
    }
    assert len(rss) == 3
    assert stored(tmp_path, "atom") == {
        f"Article {n}": {"title": f"Article {n}", "text": f"Full text {n}"} for n in range(3)
    }
    # The RSS source read the feed only; the Atom source fetched each article once.
    assert cat.hits["/feed.rss"] == 1 and cat.hits["/feed.atom"] == 1
    assert [cat.hits[f"/articles/{n}"] for n in range(3)] == [1, 1, 1]
    assert value(reg, "crawler_source_pages_total", source="atom", role="feed") == 1
    assert value(reg, "crawler_source_pages_total", source="atom", role="detail") == 3


BROKEN = [
    (
        "    paginate: {next: a}\n",
        "sources.s.paginate.max_pages: is required",
    ),
    (
        "    paginate: {next: a, page_param: p, max_pages: 3}\n",
        "sources.s.paginate.page_param: use one pagination kind, not next and page_param",
    ),
    (
        "    paginate: {cursor: m.c, max_pages: 3}\n",
        "sources.s.paginate.param: cursor needs `param`: the query parameter that carries the cursor",
    ),
    (
        "    follow: {links: a}\n",
        "sources.s.follow.max_per_run: is required",
    ),
    (
        "    follow: {links: a, max_per_run: 0}\n",
        "sources.s.follow.max_per_run: must be greater than zero",
    ),
    (
        "    follow: {links: a, max_per_run: 5, include: ['(']}\n",
        "sources.s.follow.include:",
    ),
    (
        "    sitemap: {url: 'http://x.example/s.xml'}\n",
        "sources.s.sitemap.max_urls: is required",
    ),
    (
        "    sitemap: {url: robots, max_urls: 5}\n",
        "sources.s.sitemap.site: url: robots needs `site: https://…` (whose robots.txt to read)",
    ),
    (
        "    sitemap: {url: 'http://x.example/s.xml', max_urls: 5}\n"
        "    follow: {links: a, max_per_run: 5}\n",
        "sources.s.follow: a sitemap source's pages give the records: follow needs listing pages",
    ),
    (
        "    paginate: {next: '[[', max_pages: 3}\n",
        "sources.s.paginate.next: CSS selector '[[' does not parse",
    ),
    (
        "    paginate: {cursor: m.c, param: c, max_pages: 3}\n",
        "sources.s.paginate.cursor: a cursor is read with JMESPath: needs `parser: json`",
    ),
    (
        "    sitemap: {url: 'http://x.example/s.xml', max_urls: 5}\n"
        "    paginate: {next: a, max_pages: 3}\n",
        "sources.s.paginate: a sitemap source's pages come from the sitemap: nothing to paginate",
    ),
    (
        "    follow: {links: a, max_per_run: 5, parser: xml}\n",
        "sources.s.follow.parser: must be html or json",
    ),
    (
        "    parser: feed\n    follow: {links: title, max_per_run: 5}\n",
        "sources.s.follow.links: a feed gives links in `link` or `id`, not 'title'",
    ),
]


@pytest.mark.parametrize(("extra", "message"), BROKEN, ids=[m for _, m in BROKEN])
def test_broken_discovery_config_is_one_line_each(tmp_path: Path, extra: str, message: str):
    urls = "" if "sitemap:" in extra else "    urls: ['http://x.example/']\n"
    path = write(
        tmp_path, f"  - name: s\n    every: 1h\n{urls}    fields: {{t: h1::text}}\n{extra}"
    )
    proc = run_cli("check", "-c", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    where, _, rest = lines[0].partition(": ")
    assert where.startswith(f"{path}:") and where.rsplit(":", 1)[1].isdigit(), lines[0]
    assert rest.startswith(message), lines[0]


def test_sources_with_discovery_pass_check(cat: CatalogueSite, tmp_path: Path):
    base = cat.base
    text = "".join(t.format(base=base) for t in (BOOKS, LOOPS, APIS, SITEMAP, FEEDS))
    proc = run_cli("check", "-c", str(write(tmp_path, text)))
    assert proc.returncode == 0, proc.stderr
