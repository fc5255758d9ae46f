"""Discovery within a run: next-page URLs of every kind, loop detection, link filtering, the
listing group that waits for its detail pages, and the frontier."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from lxml import html

from crawler.config.discovery import (
    BOUND,
    DETAIL,
    EXCLUDED,
    LISTING,
    OFF_HOST,
    SEEN,
    FollowConfig,
    PaginateConfig,
    SitemapConfig,
)
from crawler.run.frontier import Frontier, Group, Task
from crawler.sources.discover import (
    Chain,
    LinkFilter,
    Paginator,
    absolute,
    compile_links,
    with_query,
)


def doc(markup: str) -> object:
    return html.fromstring(markup)


# --------------------------------------------------------------------------- next-page URLs


def test_next_selector_is_joined_with_the_page_url():
    p = Paginator(PaginateConfig(next="li.next a::attr(href)", max_pages=5), "html")
    page = doc("<ul><li class='next'><a href='page-2.html#top'>next</a></li></ul>")
    assert (
        p.next_url("https://s.example/cat/page-1.html", page) == "https://s.example/cat/page-2.html"
    )
    assert p.next_url("https://s.example/cat/page-1.html", doc("<p>last</p>")) is None


def test_next_jmespath_for_json():
    p = Paginator(PaginateConfig(next="links.next", max_pages=5), "json")
    assert p.next_url("https://a.example/items?x=1", {"links": {"next": "/items?x=2"}}) == (
        "https://a.example/items?x=2"
    )
    assert p.next_url("https://a.example/items", {"links": {"next": None}}) is None


def test_cursor_goes_into_its_query_parameter():
    p = Paginator(PaginateConfig(cursor="meta.next_cursor", param="cursor", max_pages=5), "json")
    url = "https://a.example/items?limit=100"
    assert p.next_url(url, {"meta": {"next_cursor": "abc"}}) == (
        "https://a.example/items?limit=100&cursor=abc"
    )
    assert p.next_url(url + "&cursor=abc", {"meta": {"next_cursor": 7.0}}) == (
        "https://a.example/items?limit=100&cursor=7"
    )
    for end in (None, "", {"x": 1}):
        assert p.next_url(url, {"meta": {"next_cursor": end}}) is None


def test_link_header_rel():
    p = Paginator(PaginateConfig(link_header="next", max_pages=5), "json")
    url = "https://a.example/items?page=1"
    assert p.next_url(url, [], {"next": "/items?page=2"}) == "https://a.example/items?page=2"
    assert p.next_url(url, [], {"prev": "/items?page=0"}) is None
    assert p.next_url(url, [], None) is None


def test_page_param_increments_from_start():
    p = Paginator(PaginateConfig(page_param="page", start=0, max_pages=5), "json")
    assert p.next_url("https://a.example/i?q=x", None) == "https://a.example/i?q=x&page=1"
    assert p.next_url("https://a.example/i?page=4&q=x", None) == "https://a.example/i?page=5&q=x"
    assert p.next_url("https://a.example/i?page=oops", None) is None


def test_hostile_links_are_dropped_not_raised():
    assert absolute("https://s.example/a", "http://[::1") is None
    assert absolute("https://s.example/a", "javascript:alert(1)") is None
    assert absolute("https://s.example/a", "mailto:x@y") is None
    assert with_query("https://s.example/a?b=1&c=2", "b", "9") == "https://s.example/a?b=9&c=2"


def test_json_links_take_strings_and_lists():
    find = compile_links("json", "data[].url")
    assert find({"data": [{"url": "/a"}, {"url": None}, {"url": "/b"}]}) == ["/a", "/b"]
    assert compile_links("json", "next")({"next": "/n"}) == ["/n"]
    assert compile_links("feed", "link")([{"link": "https://f/1"}, {"link": None}]) == [
        "https://f/1"
    ]


# --------------------------------------------------------------------------- chains


def test_chain_stops_at_each_condition():
    cfg = PaginateConfig(page_param="page", max_pages=3)
    seen = {"u1"}
    c = Chain()
    assert c.step(cfg, "u2", b"h1", 10, seen) == ("u2", None)
    seen.add("u2")
    assert c.step(cfg, "u3", b"h2", 10, seen) == ("u3", None)
    assert c.step(cfg, "u4", b"h3", 10, seen) == (None, "max_pages")
    assert Chain().step(cfg, None, b"h", 10, seen) == (None, "end")
    assert Chain().step(cfg, "u9", b"h", 0, seen) == (None, "empty")
    assert Chain().step(cfg, "u1", b"h", 10, seen) == (None, "loop")
    same = Chain()
    assert same.step(cfg, "x2", b"h", 10, seen) == ("x2", None)
    assert same.step(cfg, "x3", b"h", 10, seen) == (None, "same_body")


# --------------------------------------------------------------------------- follow


def test_link_filter_reasons_in_order():
    cfg = FollowConfig(
        links="a::attr(href)",
        include=(re.compile(r"/p/"),),
        exclude=(re.compile(r"/p/secret"),),
        max_per_run=2,
    )
    f = LinkFilter.for_follow(cfg, set())
    host = "s.example"
    assert f.skip_reason("https://s.example/about", host) == EXCLUDED
    assert f.skip_reason("https://s.example/p/secret-1", host) == EXCLUDED
    assert f.skip_reason("https://other.example/p/1", host) == OFF_HOST
    assert f.skip_reason("https://s.example/p/1", host) is None
    assert f.skip_reason("https://s.example/p/1", host) == SEEN
    assert f.skip_reason("https://s.example/p/2", host) is None
    assert f.skip_reason("https://s.example/p/3", host) == BOUND
    everywhere = LinkFilter.for_follow(
        FollowConfig(links="a", same_host=False, max_per_run=5), set()
    )
    assert everywhere.skip_reason("https://other.example/x", host) is None


def test_group_finishes_only_when_every_child_ended_well():
    done: list[str] = []
    g = Group(lambda: done.append("listing"))
    g.add()
    g.add()
    g.child_done(True)
    g.seal()
    assert done == []
    g.child_done(True)
    assert done == ["listing"]

    failed = Group(lambda: done.append("failed"))
    failed.add()
    failed.seal()
    failed.child_done(False)
    bounded = Group(lambda: done.append("bounded"))
    bounded.seal(complete=False)
    empty = Group(lambda: done.append("empty"))
    empty.seal()
    assert done == ["listing", "empty"]


async def test_frontier_gives_details_first_and_ends_when_idle():
    f = Frontier()
    f.push(Task("l1", LISTING))
    f.push(Task("d1", DETAIL))
    got: list[str] = []

    async def worker() -> None:
        while (task := await f.get()) is not None:
            got.append(task.url)
            if task.url == "l1":
                await asyncio.sleep(0.01)  # the other worker idles meanwhile and must not end
                f.push(Task("d2", DETAIL))
                f.push(Task("l2", LISTING))
            f.done()

    await asyncio.wait_for(asyncio.gather(worker(), worker()), 5)
    assert got[0] == "d1" and sorted(got) == ["d1", "d2", "l1", "l2"]
    assert got.index("d2") < got.index("l2")
    assert len(f) == 0


async def test_closed_frontier_drops_its_queue():
    f = Frontier()
    for i in range(5):
        f.push(Task(f"u{i}", LISTING))
    assert (await f.get()) is not None
    f.close()
    assert await f.get() is None
    assert len(f) == 0


# --------------------------------------------------------------------------- config checks


@pytest.mark.parametrize(
    ("cfg", "problems"),
    [
        (PaginateConfig(max_pages=1), [("", "needs one of next, cursor, link_header, page_param")]),
        (
            PaginateConfig(next="a", page_param="p", max_pages=1),
            [("page_param", "use one pagination kind, not next and page_param")],
        ),
        (
            PaginateConfig(cursor="m.c", max_pages=1),
            [("param", "cursor needs `param`: the query parameter that carries the cursor")],
        ),
        (PaginateConfig(next="a", param="c", max_pages=1), [("param", "only used with `cursor`")]),
        (
            PaginateConfig(next="a", start=0, max_pages=1),
            [("start", "only used with `page_param`")],
        ),
        (PaginateConfig(link_header="next", max_pages=1), []),
    ],
)
def test_paginate_checks(cfg: PaginateConfig, problems: list[tuple[str, str]]):
    assert list(cfg.check()) == problems


def test_follow_and_sitemap_checks():
    assert list(SitemapConfig(url="robots", max_urls=1).check()) == [
        ("site", "url: robots needs `site: https://…` (whose robots.txt to read)")
    ]
    assert list(SitemapConfig(url="https://s/x.xml", site="https://s", max_urls=1).check()) == [
        ("site", "only used with `url: robots`")
    ]


def test_links_from_json_doc_roundtrip():
    body = json.dumps({"items": [{"href": "/d/1"}, {"href": "/d/2"}]})
    assert compile_links("json", "items[].href")(json.loads(body)) == ["/d/1", "/d/2"]
