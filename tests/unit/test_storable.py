"""Storable values: NUL removed, lone surrogates replaced, everything else untouched."""

from __future__ import annotations

import json

from crawler.sources.extract import Extractor
from crawler.storable import clean_text, storable, storable_record
from tests.unit.test_extract import source


def test_clean_text() -> None:
    assert clean_text("plain") == "plain"
    assert clean_text("a\x00b\x00") == "ab"
    assert clean_text("x\ud800y") == "x\ufffdy"
    assert clean_text("\udfff") == "\ufffd"
    assert clean_text("é\x00\ud800ü") == "é\ufffdü"
    assert clean_text("ok 😀 “quoted”") == "ok 😀 “quoted”"
    # Two halves that form a pair are the character they encode.
    assert clean_text("a\ud83d\ude00b") == "a😀b"
    for text in ("a\x00b", "x\ud800y", "\x00\udc00"):
        clean_text(text).encode("utf-8")  # encodable: no exception


def test_storable_walks_lists_and_objects_including_their_keys() -> None:
    value = {"a\x00": ["x\ud800", {"n": 1, "m\ud800": None, "t": True}], "f": 1.5}
    assert storable(value) == {"a": ["x\ufffd", {"n": 1, "m\ufffd": None, "t": True}], "f": 1.5}


def test_storable_record_keeps_clean_records_as_they_are() -> None:
    data = {"text": "“fine”", "tags": ["a", "b"], "n": 3, "none": None}
    assert storable_record(data) is data
    assert data == {"text": "“fine”", "tags": ["a", "b"], "n": 3, "none": None}
    assert storable_record({"k\x00": "v"}) == {"k": "v"}


def test_json_extraction_gives_storable_records_with_keys_of_the_cleaned_values() -> None:
    ex = Extractor(source("json", "items", {"id": "id", "text": "text"}, key=("id",)))
    body = json.dumps(
        {
            "items": [
                {"id": "nul", "text": "a\u0000b"},
                {"id": "sur", "text": "x\ud800y"},
                {"id": "k\u0000ey", "text": "nul in the key field"},
            ]
        }
    ).encode()
    assert b"\\u0000" in body and b"\\ud800" in body
    records = ex.extract(body)
    assert [(r.key, r.data) for r in records] == [
        ("nul", {"id": "nul", "text": "ab"}),
        ("sur", {"id": "sur", "text": "x\ufffdy"}),
        ("key", {"id": "key", "text": "nul in the key field"}),
    ]
