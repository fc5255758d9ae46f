"""The field pipeline, step by step and type by type, including values that do not convert."""

from __future__ import annotations

import json
from datetime import timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from lxml import html as lxml_html

from crawler.config.fields import FieldSpec
from crawler.config.fieldtypes import Invalid, convert
from crawler.sources.fields import FieldSet
from crawler.sources.pagedata import PageData
from crawler.sources.tally import FieldTally

PAGE = "https://shop.example/p/7?x=1"
PARIS = ZoneInfo("Europe/Paris")


# --------------------------------------------------------------------------- types, good values


@pytest.mark.parametrize(
    ("type_", "raw", "expected"),
    [
        ("str", "abc", "abc"),
        ("str", 12, "12"),
        ("str", 1.5, "1.5"),
        ("str", True, "true"),
        ("str", {"b": 1, "a": 2}, '{"a":2,"b":1}'),
        ("int", "42", 42),
        ("int", " 1,234 ", 1234),
        ("int", "1.234", 1234),
        ("int", "12 items", 12),
        ("int", 7, 7),
        ("int", 7.0, 7),
        ("int", "-3", -3),
        ("float", "2.5", 2.5),
        ("float", "1e-3", 0.001),
        ("float", "1.234,5", 1234.5),
        ("float", 3, 3.0),
        ("decimal", "£51.77", 51.77),
        ("decimal", "1.234,56", 1234.56),
        ("decimal", "1,234.56", 1234.56),
        ("decimal", "1 234,56 €", 1234.56),
        ("decimal", "51,77", 51.77),
        ("decimal", "0,123", 0.123),
        ("decimal", "0.5", 0.5),
        ("decimal", "1,234", 1234),
        ("decimal", "12", 12),
        ("decimal", "-4.50", -4.5),
        ("decimal", "\u2212 4,50 €", -4.5),  # a typographic minus
        ("decimal", 19.99, 19.99),
        ("decimal", 20, 20),
        ("bool", "yes", True),
        ("bool", " TRUE ", True),
        ("bool", "off", False),
        ("bool", "0", False),
        ("bool", 1, True),
        ("bool", False, False),
        ("datetime", "2026-11-22T10:00:00Z", "2026-11-22T10:00:00+00:00"),
        ("datetime", "2026-11-22T10:00:00+01:00", "2026-11-22T09:00:00+00:00"),
        ("datetime", "2026-11-22", "2026-11-22T00:00:00+00:00"),
        ("datetime", "2026-11-22 10:00", "2026-11-22T10:00:00+00:00"),
        ("datetime", "Sun, 22 Nov 2026 10:00:00 GMT", "2026-11-22T10:00:00+00:00"),
        ("datetime", "22 November 2026", "2026-11-22T00:00:00+00:00"),
        ("datetime", 1_795_000_000, "2026-11-18T11:06:40+00:00"),
        ("datetime", 1_795_000_000_000, "2026-11-18T11:06:40+00:00"),
        ("url", "/p/8", "https://shop.example/p/8"),
        ("url", "q?page=2", "https://shop.example/p/q?page=2"),
        ("url", " https://other.example/x ", "https://other.example/x"),
        ("url", "//cdn.example/i.png", "https://cdn.example/i.png"),
    ],
)
def test_type_converts(type_: str, raw: Any, expected: Any) -> None:
    value = convert(type_, raw, PAGE, timezone.utc)
    assert value == expected
    assert type(value) is type(expected)


def test_naive_datetimes_are_in_the_source_time_zone() -> None:
    # Paris is UTC+1 in November, UTC+2 in July (zoneinfo knows the summer time).
    assert convert("datetime", "2026-11-22 10:00", PAGE, PARIS) == "2026-11-22T09:00:00+00:00"
    assert convert("datetime", "2026-07-01T10:00", PAGE, PARIS) == "2026-07-01T08:00:00+00:00"
    # An explicit offset wins over the source's zone.
    assert convert("datetime", "2026-07-01T10:00Z", PAGE, PARIS) == "2026-07-01T10:00:00+00:00"


# --------------------------------------------------------------------------- types, bad values


@pytest.mark.parametrize(
    ("type_", "raw"),
    [
        ("int", "abc"),
        ("int", "1.5"),
        ("int", ""),
        ("int", True),
        ("int", [1]),
        ("int", "9" * 300),
        ("float", "nan"),
        ("float", "inf"),
        ("float", "n/a"),
        ("float", float("nan")),
        ("decimal", "free"),
        ("decimal", {"amount": 1}),
        ("decimal", False),
        ("bool", "maybe"),
        ("bool", 2),
        ("bool", None),
        ("datetime", "soon"),
        ("datetime", "12"),
        ("datetime", "2026-13-45"),
        ("datetime", True),
        ("datetime", 1e30),
        ("url", "javascript:alert(1)"),
        ("url", "mailto:a@b.example"),
        ("url", ""),
        ("url", 5),
    ],
)
def test_type_refuses(type_: str, raw: Any) -> None:
    with pytest.raises(Invalid):
        convert(type_, raw, PAGE, timezone.utc)


# --------------------------------------------------------------------------- steps on html

HTML = b"""<html><head>
<base href="https://shop.example/catalogue/">
<script type="application/ld+json">{"@context": "https://schema.org", "@type": "Product",
  "name": "Pi", "offers": {"@type": "Offer", "sku": "PI-3B", "price": "35.00"}}</script>
<script type="application/ld+json">not json at all</script>
<script id="__NEXT_DATA__" type="application/json">
  {"props": {"pageProps": {"item": {"state": "in_stock", "count": 3}}}}</script>
</head><body>
<h1>
   Raspberry   Pi
   3 Model B
</h1>
<p class="price">Now only \xc2\xa351.77!</p>
<a class="more" href="../p/8.html">more</a>
<time datetime="2026-11-22T10:00:00">Sunday</time>
<span class="stock">lots</span>
<ul><li class="tag"> a </li><li class="tag">b</li><li class="tag"> </li></ul>
</body></html>"""


def run_html(spec: FieldSpec, tz: str = "UTC") -> tuple[Any, FieldTally]:
    root = lxml_html.fromstring(HTML)
    tally = FieldTally()
    fs = FieldSet([FieldSpec(name="other", selector="h1::text"), spec], "html", tz)
    rec = fs.record(root, PageData(PAGE, root), tally)
    return (rec or {}).get(spec.name, "<dropped>"), tally


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # select + strip (default on): whitespace collapsed
        (FieldSpec(name="f", selector="h1::text"), "Raspberry Pi 3 Model B"),
        # strip: false keeps the text as written
        (
            FieldSpec(name="f", selector="h1::text", strip=False),
            "\n   Raspberry   Pi\n   3 Model B\n",
        ),
        # all: every match, each stripped; empty matches left out
        (FieldSpec(name="f", selector="li.tag::text", all=True), ["a", "b"]),
        # regex: the first group
        (FieldSpec(name="f", selector=".price::text", regex=r"([\d.,]+)"), "51.77"),
        # regex: the whole match without a group
        (FieldSpec(name="f", selector=".price::text", regex=r"\d+"), "51"),
        # regex + type
        (FieldSpec(name="f", selector=".price::text", regex=r"([\d.,]+)", type="decimal"), 51.77),
        # url: joined with <base href>
        (
            FieldSpec(name="f", selector="a.more::attr(href)", type="url"),
            "https://shop.example/p/8.html",
        ),
        # datetime from an attribute, naive → the source's zone (tested below), here UTC
        (
            FieldSpec(name="f", selector="time::attr(datetime)", type="datetime"),
            "2026-11-22T10:00:00+00:00",
        ),
        # json_ld with a JMESPath inside; the script that is not JSON is skipped
        (FieldSpec(name="f", json_ld="offers.sku"), "PI-3B"),
        (FieldSpec(name="f", json_ld="offers.price", type="decimal"), 35),
        # embedded_json (+ path)
        (
            FieldSpec(
                name="f", embedded_json="script#__NEXT_DATA__", path="props.pageProps.item.state"
            ),
            "in_stock",
        ),
        (
            FieldSpec(
                name="f",
                embedded_json="script#__NEXT_DATA__",
                path="props.pageProps.item.count",
                type="str",
            ),
            "3",
        ),
        # default fills a missing value, and one that does not convert
        (FieldSpec(name="f", selector=".nothing::text", default="n/a"), "n/a"),
        (FieldSpec(name="f", selector=".stock::text", type="int", default=0), 0),
        # a regex that does not match: missing
        (FieldSpec(name="f", selector=".price::text", regex=r"(\d+ EUR)"), None),
    ],
)
def test_html_steps(spec: FieldSpec, expected: Any) -> None:
    value, _ = run_html(spec)
    assert value == expected


def test_naive_time_on_a_page_uses_the_source_time_zone() -> None:
    value, _ = run_html(
        FieldSpec(name="f", selector="time::attr(datetime)", type="datetime"), "Europe/Paris"
    )
    assert value == "2026-11-22T09:00:00+00:00"


def test_a_value_that_does_not_convert_is_missing_and_counted() -> None:
    value, tally = run_html(FieldSpec(name="f", selector=".stock::text", type="int"))
    assert value is None
    assert tally.invalid == {"f": 1}
    assert tally.missing == {"f": 1}
    assert tally.dropped == 0


def test_a_missing_required_field_drops_the_record() -> None:
    value, tally = run_html(FieldSpec(name="f", selector=".stock::text", type="int", required=True))
    assert value == "<dropped>"
    assert tally.dropped == 1
    assert tally.first_drop == {"f": PAGE}
    assert tally.missing == {}  # counted for kept records only


def test_a_node_where_nothing_matches_is_no_record() -> None:
    root = lxml_html.fromstring(b"<html><body><p>x</p></body></html>")
    tally = FieldTally()
    fs = FieldSet(
        [FieldSpec(name="a", selector="h1::text"), FieldSpec(name="b", selector="h2::text")], "html"
    )
    assert fs.record(root, PageData(PAGE, root), tally) is None
    assert tally.missing == {} and tally.dropped == 0


def test_json_ld_and_embedded_json_are_parsed_once_per_page() -> None:
    root = lxml_html.fromstring(HTML)
    page = PageData(PAGE, root)
    fs = FieldSet(
        [
            FieldSpec(name="sku", json_ld="offers.sku"),
            FieldSpec(name="name", json_ld="name"),
            FieldSpec(
                name="state",
                embedded_json="script#__NEXT_DATA__",
                path="props.pageProps.item.state",
            ),
            FieldSpec(
                name="count",
                embedded_json="script#__NEXT_DATA__",
                path="props.pageProps.item.count",
            ),
        ],
        "html",
    )
    first = fs.record(root, page, FieldTally())
    docs, embedded = page.json_ld(), dict(page._embedded)
    second = fs.record(root, page, FieldTally())
    assert first == second == {"sku": "PI-3B", "name": "Pi", "state": "in_stock", "count": 3}
    assert page.json_ld() is docs and len(docs) == 1  # the script that is not JSON: skipped
    assert embedded == page._embedded


def test_json_ld_graph_and_lists_are_flattened() -> None:
    body = json.dumps(
        [{"@graph": [{"@type": "WebPage"}, {"@type": "Product", "gtin": "123"}]}]
    ).encode()
    root = lxml_html.fromstring(
        b'<html><head><script type="Application/LD+JSON">' + body + b"</script></head></html>"
    )
    fs = FieldSet([FieldSpec(name="gtin", json_ld="gtin")], "html")
    assert fs.record(root, PageData(PAGE, root), FieldTally()) == {"gtin": "123"}


# --------------------------------------------------------------------------- steps on json


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (FieldSpec(name="f", selector="id"), 17),
        (FieldSpec(name="f", path="price.amount", type="decimal"), 1234.5),
        (FieldSpec(name="f", path="price.amount"), "1.234,50"),
        (FieldSpec(name="f", path="tags", all=True, type="str"), ["x", "1"]),
        (FieldSpec(name="f", path="id", all=True), [17]),
        (FieldSpec(name="f", path="when", type="datetime"), "2026-01-02T03:04:05+00:00"),
        (FieldSpec(name="f", path="link", type="url"), "https://shop.example/p/17"),
        (FieldSpec(name="f", path="name", strip=True), "  spaced  "),  # strip is for html text
        (FieldSpec(name="f", path="name", regex=r"\w+"), "spaced"),
        (FieldSpec(name="f", path="id", regex=r"(\d)"), "1"),
        (FieldSpec(name="f", path="flag", type="bool"), False),
        (FieldSpec(name="f", path="nope", default=5), 5),
    ],
)
def test_json_steps(spec: FieldSpec, expected: Any) -> None:
    node = {
        "id": 17,
        "price": {"amount": "1.234,50"},
        "tags": ["x", 1],
        "when": "2026-01-02T03:04:05Z",
        "link": "/p/17",
        "name": "  spaced  ",
        "flag": "no",
    }
    fs = FieldSet([FieldSpec(name="k", path="id"), spec], "json")
    rec = fs.record(node, PageData(PAGE, node), FieldTally())
    assert rec is not None
    assert rec["f"] == expected


def test_bad_values_in_a_list_are_left_out_and_counted() -> None:
    node = {"prices": ["1.50", "free", "2,25"]}
    tally = FieldTally()
    fs = FieldSet([FieldSpec(name="p", path="prices", all=True, type="decimal")], "json")
    assert fs.record(node, PageData(PAGE, node), tally) == {"p": [1.5, 2.25]}
    assert tally.invalid == {"p": 1}


# --------------------------------------------------------------------------- config checks


@pytest.mark.parametrize(
    ("spec", "key", "fragment"),
    [
        (FieldSpec(name="f"), "selector", "needs selector"),
        (FieldSpec(name="f", selector="a", json_ld="b"), "json_ld", "use one of"),
        (FieldSpec(name="f", selector="a", path="b"), "path", "not both"),
        (FieldSpec(name="f", json_ld="a", path="b"), "path", "whole path"),
        (FieldSpec(name="f", selector="a", type="money"), "type", "must be one of"),
        (FieldSpec(name="f", selector="a", regex="(unclosed"), "regex", "does not compile"),
        (FieldSpec(name="f", selector="a", required=True, default=1), "default", "required"),
        (
            FieldSpec(name="f", selector="a", type="int", default="many"),
            "default",
            "not a valid int",
        ),
    ],
)
def test_field_checks(spec: FieldSpec, key: str, fragment: str) -> None:
    problems = list(spec.check())
    assert any(k == key and fragment in m for k, m in problems), problems


@pytest.mark.parametrize(
    ("spec", "parser", "key", "fragment"),
    [
        (FieldSpec(name="f", json_ld="a"), "json", "json_ld", "html sources"),
        (FieldSpec(name="f", embedded_json="script"), "json", "embedded_json", "html sources"),
        (FieldSpec(name="f", path="a"), "html", "path", "selector"),
        (FieldSpec(name="f", json_ld="a[["), "html", "json_ld", "JMESPath"),
        (FieldSpec(name="f", embedded_json="script[[", path="a"), "html", "embedded_json", "CSS"),
        (FieldSpec(name="f", embedded_json="script", path="a[["), "html", "path", "JMESPath"),
        (FieldSpec(name="f", path="a[["), "json", "path", "JMESPath"),
    ],
)
def test_field_problems_for_the_parser(
    spec: FieldSpec, parser: str, key: str, fragment: str
) -> None:
    from crawler.config.fields import field_problems

    problems = list(field_problems(spec, parser))
    assert any(k == key and fragment in m for k, m in problems), problems


@pytest.mark.parametrize(
    "base",
    [
        "https://shop.example/p/7?x=1",
        "http://h.example",
        "http://h.example?q=1",
        "http://h.example:8080/a/b/#frag",
        "HTTPS://Shop.Example/dir/",
    ],
)
@pytest.mark.parametrize(
    "link",
    [
        "/p/8",
        "/p/8?a=b#c",
        "/a/../b",
        "/./x",
        "https://o.example/x",
        "https://o.example/./x",
        "http://o.example",
        "q?page=2",
        "../up",
        "//cdn.example/i.png",
        "#top",
        "/",
    ],
)
def test_url_fast_paths_agree_with_urljoin(base: str, link: str) -> None:
    from urllib.parse import urljoin

    assert convert("url", link, base, timezone.utc) == urljoin(base, link)
