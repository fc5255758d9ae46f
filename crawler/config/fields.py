"""A field's declaration: the `fields:` entry of a source, its keys, defaults and documentation
(`FieldSpec`), and the problems a configuration can have with it (`field_problems`).

The pipeline these keys drive is compiled in crawler/sources/fields.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timezone
from typing import Any

from crawler.config import convert as cv
from crawler.config.fieldtypes import TYPES, Invalid, convert
from crawler.config.loader import derived, setting


def _regex_text(value: Any) -> str:
    return cv.regex(value).pattern


def _default_value(value: Any) -> Any:
    if isinstance(value, dict):
        raise ValueError("must be a value (a string, number, boolean or list), not a mapping")
    return value


@dataclass(frozen=True, kw_only=True)
class FieldSpec:
    """One output field of a record: where its value is, and how it is cleaned and typed."""

    name: str = derived()
    selector: str | None = setting(
        None,
        cv.string,
        "CSS (`h1::text`, `a::attr(href)`) or XPath with `xpath:` in html sources; JMESPath in "
        "json sources. `name: SELECTOR` is short for `name: {selector: SELECTOR}`",
        shown="one of the four selects",
    )
    path: str | None = setting(
        None,
        cv.string,
        "JMESPath: in a json source the same as `selector`; with `embedded_json`, the path "
        "inside that JSON",
    )
    json_ld: str | None = setting(
        None,
        cv.string,
        "JMESPath into the page's schema.org JSON-LD objects (`offers.price`); the first object "
        "where it finds a value wins (html)",
    )
    embedded_json: str | None = setting(
        None,
        cv.string,
        "CSS selector of a `<script>` holding JSON, e.g. `script#__NEXT_DATA__`; parsed once "
        "per page, `path` selects inside it (html)",
    )
    all: bool = setting(False, cv.boolean, "every match as a list, not only the first")
    strip: bool = setting(
        True,
        cv.boolean,
        "collapse runs of whitespace and trim html text (markup indentation is never data); "
        "`false` keeps it as written",
    )
    regex: str | None = setting(
        None,
        _regex_text,
        "applied to the text: the first group if it has one, else the whole match; no match → "
        "missing",
    )
    type: str | None = setting(
        None,
        cv.choice(*TYPES),
        '`str`, `int`, `float`, `decimal` ("1.234,56" and "1,234.56", stored as a JSON '
        "number), `bool`, `datetime` (ISO 8601 in UTC), `url` (absolute); a value that does not "
        "convert is missing and counted in `crawler_fields_invalid_total`",
        shown="as found",
    )
    default: Any = setting(
        None, _default_value, "the value when the field is missing (after every other step)"
    )
    required: bool = setting(
        False,
        cv.boolean,
        "a record without this field is dropped: logged once per run, counted in "
        '`crawler_records_dropped_total{reason="missing_required"}`',
    )

    def check(self) -> Iterable[tuple[str, str]]:
        """Cross-key problems as (relative key, message); parser-specific ones in
        `field_problems`."""
        kinds = [
            k for k in ("selector", "json_ld", "embedded_json") if getattr(self, k) is not None
        ]
        if len(kinds) > 1:
            yield kinds[1], f"use one of selector, path, json_ld, embedded_json, not {kinds}"
        if self.selector is not None and self.path is not None:
            yield "path", "use selector or path, not both (for json sources they are the same)"
        if not kinds and self.path is None:
            yield "selector", "a field needs selector, path, json_ld or embedded_json"
        if self.json_ld is not None and self.path is not None:
            yield "path", "json_ld is already a JMESPath: put the whole path there"
        if self.type is not None and self.type not in TYPES:  # built in code, not read
            yield "type", f"must be one of {', '.join(TYPES)}"
        if self.required and self.default is not None:
            yield "default", "a required field has no default (drop one of the two)"
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                yield "regex", f"does not compile: {exc}"
        if self.default is not None and self.type is not None and self.type in TYPES:
            try:
                convert(self.type, self.default, "https://example.invalid/", timezone.utc)
            except Invalid as exc:
                yield "default", f"is not a valid {self.type}: {exc}"


def field_problems(spec: FieldSpec, parser: str) -> Iterable[tuple[str, str]]:
    """Problems of a field that depend on the source's parser: (key within the field, message)."""
    from crawler.config.selectors import check_selector

    if parser == "json":
        for key in ("json_ld", "embedded_json"):
            if getattr(spec, key) is not None:
                yield key, "is for html sources (a json source's page is the JSON already)"
        expr = spec.path if spec.path is not None else spec.selector
        if expr is not None and (error := check_selector("json", expr)):
            yield ("path" if spec.path is not None else "selector"), error
        return
    if spec.path is not None and spec.embedded_json is None:
        yield "path", "an html source selects with `selector` (or `path` with `embedded_json`)"
    for key, kind in (("selector", "html"), ("embedded_json", "html"), ("json_ld", "json")):
        value = getattr(spec, key)
        if value is not None and (error := check_selector(kind, value)):
            yield key, error
    if (
        spec.embedded_json is not None
        and spec.path is not None
        and (error := check_selector("json", spec.path))
    ):
        yield "path", error
