"""Extraction: selectors compiled once, records keyed, hostile bodies cost one parse error."""

from __future__ import annotations

import pytest

from crawler.config.fields import FieldSpec
from crawler.config.sources import SourceConfig
from crawler.errors import ErrorKind, FetchError
from crawler.sources.extract import Extractor, make_key
from tests.site import html_page, items


def source(
    parser: str,
    items_sel: str | None,
    fields: dict[str, str],
    key: tuple[str, ...] = (),
    all_fields: tuple[str, ...] = (),
) -> SourceConfig:
    return SourceConfig(
        name="s",
        urls=("http://h/",),
        parser=parser,
        items=items_sel,
        fields=tuple(FieldSpec(name=k, selector=v, all=k in all_fields) for k, v in fields.items()),
        key=key,
        every=60,
    )


def test_html_css_and_xpath_fields():
    ex = Extractor(
        source(
            "html",
            "div.quote",
            {
                "id": "xpath:./@data-id",
                "text": "span.text::text",
                "tags": "a.tag::text",
                "href": "a.tag::attr(href)",
            },
            key=("id",),
            all_fields=("tags",),
        )
    )
    recs = ex.extract(html_page(3))
    assert len(recs) == 20
    assert recs[0].key == "p3-q0"
    assert recs[0].data == {
        "id": "p3-q0",
        "text": "Quote 0 of page 3 v0",
        "tags": ["t0", "t3"],
        "href": "/tag/t0",
    }


def test_json_with_jmespath():
    import json

    body = json.dumps({"items": items(1)}).encode()
    ex = Extractor(source("json", "items", {"text": "text", "first_tag": "tags[0]"}))
    recs = ex.extract(body)
    assert [r.data["first_tag"] for r in recs[:2]] == ["t0", "t1"]
    assert len({r.key for r in recs}) == 20  # hash keys differ per record


def test_without_items_the_page_is_one_record():
    ex = Extractor(source("html", None, {"title": "title::text"}))
    [rec] = ex.extract(b"<html><head><title>Hello</title></head></html>")
    assert rec.data == {"title": "Hello"}


def test_items_without_any_field_are_skipped():
    ex = Extractor(source("html", "div", {"t": "span::text"}))
    assert [r.data for r in ex.extract(b"<div></div><div><span>x</span></div>")] == [{"t": "x"}]


def test_keys_are_stable_and_distinguish_fields():
    assert make_key(("a",), {"a": "x"}) == "x"
    assert make_key(("a",), {"a": 7}) == "7"
    two = make_key(("a", "b"), {"a": "x", "b": "y"})
    assert two == make_key(("a", "b"), {"b": "y", "a": "x"}) and len(two) == 32
    assert two != make_key(("a", "b"), {"a": "xy", "b": ""})
    assert make_key((), {"a": 1, "b": 2}) == make_key((), {"b": 2, "a": 1})
    assert make_key(("a",), {"a": "z" * 500}) != "z" * 500  # long values are hashed


@pytest.mark.parametrize(
    ("parser", "body"),
    [
        ("json", b"{not json"),
        ("json", b"\xff\xfe garbage"),
        ("html", b""),
        ("html", b"<div>" * 100_000),
    ],
    ids=["invalid-json", "binary-json", "empty-html", "deep-nesting"],
)
def test_hostile_bodies_raise_one_parse_error_at_most(parser: str, body: bytes):
    ex = Extractor(
        source(
            parser,
            "items" if parser == "json" else "div",
            {"t": "t" if parser == "json" else "span::text"},
        )
    )
    try:
        recs = ex.extract(body)
    except FetchError as exc:
        assert exc.kind is ErrorKind.PARSE
    else:
        assert recs == []
