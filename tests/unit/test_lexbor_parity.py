"""The Lexbor path gives the parsel dialect's results, exactly as the lxml path does.

Every CSS selector of the test suite, the examples and the docs (SELECTORS: `test_every_selector_
of_the_suite_is_checked` fails when a new one is not listed) is run on the test suite's pages and
on pages written to catch the two parsers' differences, through both engines: where
crawler.lexbor takes a selector, its values must equal lxml's, on the whole page and inside
each item. Then whole extractors, both engines, must give the same records.
"""

from __future__ import annotations

import importlib.util
import random
import re
from pathlib import Path
from typing import Any

import pytest

from crawler.config.fields import FieldSpec
from crawler.config.selectors import xpath_of
from crawler.config.sources import SourceConfig
from crawler.errors import ErrorKind, FetchError
from crawler.sources import lexbor
from crawler.sources.extract import LEXBOR_MAX_TAGS, Extractor
from crawler.sources.fields import _text_of
from tests.shop_site import product_page
from tests.site import html_page

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_site", ROOT / "bench" / "site.py")
assert _spec is not None and _spec.loader is not None
_bench_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench_site)
bench_page = _bench_site.page  # the benchmark's page (bench/site.py)

if not lexbor.available():  # it is a test dependency: a missing one is a broken install
    pytest.fail("selectolax is not installed: pip install -e '.[test]'", pytrace=False)

# Every html selector written in tests/, examples/, docs/, bench/ and the README (with the
# parts the scan below cannot see whole: items, embedded_json, a few by hand).
SELECTORS = [
    "h1::text",
    "span.text::text",
    "small.author::text",
    "a.tag::text",
    "a.tag::attr(href)",
    "li.next a::attr(href)",
    ".price::text",
    ".stock::text",
    "table tr:nth-child(1) td::text",
    "article.product_pod h3 a::attr(href)",
    "time::attr(datetime)",
    "a::attr(href)",
    "article::text",
    "a.more::attr(href)",
    "span::text",
    "title::text",
    "p::text",
    "p.t::text",
    "p.price_color::text",
    "p.edition::text",
    "li.tag::text",
    "h2::text",
    "div.body::text",
    ".nothing::text",
    "span.rating::text",
    "s.data::text",
    "i::text",
    "::text",
    "div.quote",
    "div.item",
    "div",
    "article",
    "h1",
    "script#__NEXT_DATA__",
    "xpath:./@data-id",
    # Written to probe the subset's edges (each engine decides alone whether to take it).
    "div.quote > span::text",
    "div > div a",
    "body span",
    "a[href]::attr(href)",
    "a[href^='/tag/']::text",
    "a[href$='e']::text",
    "a[href*='tag']::attr(href)",
    "[class~='tag']::text",
    "[data-id='p0-q1'] small::text",
    "[lang|=en]::text",
    "input[disabled]::attr(disabled)",
    "input[type=text]::attr(name)",
    "#x::text",
    "#X::text",
    ".Quote::text",
    ".quote::text",
    "p::attr(missing)",
    "div.note",
    "script::text",
    "td::text",
    "table td::text",
    "table > tr > td::text",
    "ul li + li::text",
    "li:first-child::text",
    "*::text",
    "em, strong",
    "head::text",
    "html",
    "body::text",
    "div *::text",
    # The login, Django admin and rendered-page tests' selectors (issues 25, 26).
    "a::text",
    "b::text",
    "a.next::attr(href)",
    "p.sw::text",
    "td.field-price::text",
    "th.field-name a::text",
    "* span::text",
    "div span::text",
    "span.price::text",
    "p.ready::text",
]

TRICKY = [
    # Text on either side of a comment is one node in lxml.
    b"<div class='note'>before <!-- a comment --> after<b>bold</b> tail</div>",
    b"<div class='note'><!--c-->lead<i>x</i>mid<!--d-->dle<i>y</i></div>",
    # Whitespace, entities, inline markup, scripts, styles.
    b"<html><body>\n  <p class='t'>\n   A &amp; B&nbsp;C &lt;x&gt;\n </p>\n"
    b"  <p>one<br>two<br/>three</p><script>var s = '<p>';</script>"
    b"<style>p{}</style><s class='data'>&#233;t&eacute;</s></body></html>",
    # Bare and odd attributes, case in values, ids and classes (libxml2 has no quirks mode).
    b"<form><input disabled name=a><input type=TEXT name=b><input type=text name=c>"
    b"<p id=x>lower</p><p id=X>upper</p><p class=Quote>Q</p><p class=quote>q</p>"
    b"<p lang=en-GB>gb</p><p lang=EN>EN</p><p lang=en>en</p></form>",
    # Tables without tbody (an HTML5 parser adds one).
    b"<table><tr><td>1</td><td>2</td></tr><tr><td>3</td></tr></table>",
    b"<table class=t><thead><tr><th>h</th></tr></thead><tr><td>a</td></tr></table>",
    # Lists, nested items, a missing attribute, headings and time.
    b"<ul><li class=tag>a</li><li class=tag>b <em>c</em></li><li>d</li></ul>"
    b"<div class='quote'><span class='text'>t1</span><div class='quote'>"
    b"<span class='text'>t2</span></div></div><p>no attr</p>"
    b"<em>e1</em><strong>s1</strong><em>e2</em><h2> h2 </h2><time datetime='2026-01-01'>x</time>",
    # A BOM, a doctype of its own, an article with text around children.
    b"\xef\xbb\xbf<!DOCTYPE html PUBLIC '-//W3C//DTD HTML 4.01 Transitional//EN'>"
    b"<article>\n  lead <h2>T</h2> middle <p>x</p> end\n</article>",
    # Unicode and an unclosed paragraph before a block.
    "<p class=t>żółw 🐢<div class=body>body text</div><p>after".encode(),
    # An empty and a text-only document.
    b"",
    b"just text, no markup",
]

ITEMS = ["div.quote", "div.item", "div", "p", "li", "article", "table", "body"]


def _pages() -> list[bytes]:
    rnd = random.Random(7)
    return [
        *(html_page(i) for i in range(2)),
        *(product_page(i) for i in range(1, 6)),
        *(bench_page(i, rnd) for i in range(2)),
        *TRICKY,
    ]


PAGES = _pages()


def _lxml_doc(body: bytes) -> Any:
    from lxml import etree, html

    return etree.fromstring(body or b"<html></html>", html.HTMLParser(encoding="utf-8"))


def _lxml_values(selector: str, node: Any) -> list[str]:
    from lxml import etree

    result = etree.XPath(xpath_of(selector), smart_strings=False)(node)
    return [_text_of(r) for r in result]


def _lxml_root(body: bytes) -> Any:
    from lxml import etree, html

    if not body.strip():
        return None
    try:
        return etree.fromstring(body, html.HTMLParser(encoding="utf-8", remove_comments=True))
    except etree.XMLSyntaxError:
        return None


@pytest.mark.parametrize("selector", SELECTORS)
def test_selector_parity_on_every_page(selector: str) -> None:
    whole = lexbor.compile_css(selector, relative=False)
    inside = lexbor.compile_css(selector, relative=True)
    if whole is None:
        assert inside is None  # what a page cannot take, an item cannot either
        return
    compared = 0
    for body in PAGES:
        root = _lxml_root(body)
        if root is None:
            continue
        doc = lexbor.parse(body, "utf-8")
        assert whole(doc) == _lxml_values(selector, root), (selector, body[:80])
        compared += 1
        if inside is None:
            continue
        for items in ITEMS:
            lx_items = _lxml_values_nodes(items, root)
            lb_items = doc.css(items)
            assert len(lb_items) == len(lx_items), (items, body[:80])
            for lx, lb in zip(lx_items, lb_items):
                assert inside(lb) == _lxml_values(selector, lx), (selector, items, body[:80])
    assert compared >= len(PAGES) - 1


def _lxml_values_nodes(selector: str, root: Any) -> list[Any]:
    from lxml import etree

    return list(etree.XPath(xpath_of(selector))(root))


@pytest.mark.parametrize(
    "selector, why",
    [
        ("table tr:nth-child(1) td::text", "pseudo-class"),
        ("xpath:./@data-id", "XPath"),
        ("table > tr > td::text", "table parts with a combinator (tbody)"),
        ("ul li + li::text", "sibling combinator"),
        ("input[type=text]::attr(name)", "an attribute HTML compares caselessly"),
        ("em, strong", "a selector group"),
        ("*::text", "a bare *: it matches <html> and <head>, whose whitespace libxml2 drops"),
        ("head::text", "the whitespace between <head>'s elements"),
        (r"p.a\:b", "an escape"),
        ("a[href^='']", "an empty prefix (cssselect matches all, CSS none)"),
    ],
)
def test_selectors_left_to_lxml(selector: str, why: str) -> None:
    assert lexbor.compile_css(selector, relative=False) is None, why


def test_combinators_inside_an_item_are_left_to_lxml() -> None:
    # Lexbor, like querySelectorAll, lets `div` match an ancestor outside the item.
    assert lexbor.compile_css("div span::text", relative=False) is not None
    assert lexbor.compile_css("div span::text", relative=True) is None
    assert lexbor.compile_css("span.text::text", relative=True) is not None


def test_every_selector_of_the_suite_is_checked() -> None:
    """A selector ending in ::text or ::attr() anywhere in the tests, examples, docs or bench
    must be in SELECTORS (so this parity test covers it)."""
    pattern = re.compile(r"""([\w.#*>\[\]=' -]*?(?:[\w.#*\]])?)::(text|attr\([\w-]+\))""")
    found: set[str] = set()
    for folder in ("tests", "examples", "docs", "bench"):
        for path in (ROOT / folder).rglob("*"):
            # test_css.py holds the translator's corners (refusals among them), not extraction.
            if path.suffix not in (".py", ".md", ".yaml", ".yml", ".sh") or path in (
                Path(__file__),
                Path(__file__).with_name("test_css.py"),
            ):
                continue
            for m in pattern.finditer(path.read_text(errors="replace")):
                sel = f"{m.group(1).strip()}::{m.group(2)}".lstrip(":' ")
                if sel.startswith(("text", "attr")):
                    sel = "::" + sel
                found.add(sel)
    known = set(SELECTORS) | {"::attr(name)", "sel::text", "sel::attr(name)"}
    # Tail ends of longer selectors the scan cut (`table tr:nth-child(1) td::text`) and SQL.
    noise = {"td::text", "nth-child(1) td::text", "i::text", "data::text", "s::text"}
    missing = sorted(s for s in found - known - noise if not s.endswith(("s::text",)))
    assert not missing, f"add these to SELECTORS: {missing}"


def _source(**kw: Any) -> SourceConfig:
    fields = tuple(FieldSpec(name=n, **spec) for n, spec in kw.pop("fields").items())
    return SourceConfig(name="s", every=3600.0, urls=("http://x.example/",), fields=fields, **kw)


SOURCES = [
    _source(
        items="div.quote",
        fields={
            "text": {"selector": "span.text::text"},
            "author": {"selector": "small.author::text"},
            "tags": {"selector": "a.tag::text", "all": True},
            "n": {"selector": "span.text::text", "regex": r"^#\d+\.(\d+)", "type": "int"},
            "links": {"selector": "a.tag::attr(href)", "all": True, "type": "url"},
        },
        key=("text", "author"),
    ),
    _source(
        fields={
            "title": {"selector": "h1::text"},
            "price": {"selector": ".price::text", "regex": r"([\d.,]+)", "type": "decimal"},
            "link": {"selector": "a.more::attr(href)", "type": "url"},
            "published": {"selector": "time::attr(datetime)", "type": "datetime"},
            "stock": {"selector": ".stock::text", "type": "int", "default": 0},
            "sku": {"json_ld": "offers.sku"},
            "state": {
                "embedded_json": "script#__NEXT_DATA__",
                "path": "props.pageProps.item.state",
            },
            "whole": {"selector": "body"},
        },
    ),
    _source(
        items="div", fields={"t": {"selector": "span::text", "all": True}, "d": {"selector": "div"}}
    ),
]


@pytest.mark.parametrize("index", range(len(SOURCES)))
def test_extractors_give_the_same_records(index: int) -> None:
    source = SOURCES[index]
    fast, slow = Extractor(source), Extractor(source, lexbor=False)
    assert (fast.engine, slow.engine) == ("lexbor", "lxml")
    for i, body in enumerate(PAGES):
        if not body.strip():
            continue  # test_an_empty_page_is_a_parse_error_in_both
        url = f"http://x.example/p/{i}.html"
        assert fast.extract(body, "utf-8", url) == slow.extract(body, "utf-8", url), body[:80]


def test_base_href_and_json_ld_type_case() -> None:
    body = (
        b"<html><head><base href='https://cdn.example/shop/'>"
        b'<script type=\'Application/LD+JSON\'>{"sku": "A1"}</script></head>'
        b"<body><a class=more href='item/1'>x</a></body></html>"
    )
    source = _source(
        fields={
            "link": {"selector": "a.more::attr(href)", "type": "url"},
            "sku": {"json_ld": "sku"},
        }
    )
    fast, slow = Extractor(source), Extractor(source, lexbor=False)
    got = fast.extract(body, "utf-8", "http://x.example/")
    assert got == slow.extract(body, "utf-8", "http://x.example/")
    assert got[0].data == {"link": "https://cdn.example/shop/item/1", "sku": "A1"}


def test_a_huge_page_goes_through_lxml_with_the_same_records() -> None:
    source = SOURCES[0]
    rnd = random.Random(1)
    body = bench_page(0, rnd).replace(b"<footer>", b"<i></i>" * LEXBOR_MAX_TAGS + b"<footer>")
    fast = Extractor(source)
    doc = fast.parse(body, "utf-8")
    assert fast.engine == "lexbor" and fast.engine_of(doc) == "lxml"
    assert fast.records(doc, "http://x.example/") == Extractor(source, lexbor=False).extract(
        body, "utf-8", "http://x.example/"
    )


@pytest.mark.parametrize("body", [b"", b"  \n", b"<!-- only a comment -->", b"<!DOCTYPE html>"])
def test_an_empty_page_is_a_parse_error_in_both(body: bytes) -> None:
    for extractor in (Extractor(SOURCES[0]), Extractor(SOURCES[0], lexbor=False)):
        with pytest.raises(FetchError) as caught:
            extractor.extract(body, "utf-8", "http://x.example/")
        assert caught.value.kind is ErrorKind.PARSE


def test_engine_choice() -> None:
    assert Extractor(SOURCES[0]).engine == "lexbor"
    forced = _source(html_engine="lxml", fields={"t": {"selector": "h1::text"}})
    assert Extractor(forced).engine == "lxml"
    xpath = _source(fields={"t": {"selector": "xpath://h1/text()"}})
    assert Extractor(xpath).engine == "lxml"
    relative = _source(items="div.quote", fields={"t": {"selector": "div span::text"}})
    assert Extractor(relative).engine == "lxml"
