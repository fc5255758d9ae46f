"""The field pipeline: from what a selector matched to a clean, typed value.

Each configured field runs, in this order, the steps it names:

    select → all → strip → regex → type → default

*select* is a CSS/XPath `selector` (html), a JMESPath `path` (json), `json_ld` (a JMESPath into
the page's schema.org JSON-LD objects) or `embedded_json` (a CSS selector of a `<script>` holding
JSON, with an optional `path` into it). *strip* collapses the whitespace of html text (on by
default: markup indentation is never data). *regex* keeps the first group, else the whole match.
*type* converts (`str`, `int`, `float`, `decimal`, `bool`, `datetime`, `url`). *default* fills
a value that is still missing.

Everything is compiled once per source (`compile_fields`): selectors, regexes, the time zone,
the converters. Per page, JSON-LD and embedded JSON are parsed at most once, and only when a
field asks for them. A value that does not convert is *missing* (and counted as invalid in the
run's `FieldTally`), never an exception: one odd price must not cost the page's other records.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import timezone
from typing import Any
from zoneinfo import ZoneInfo

from crawler.config.fields import FieldSpec
from crawler.config.fieldtypes import CONVERTERS, Invalid, scalar_text
from crawler.sources.pagedata import PageData, is_missing
from crawler.sources.tally import FieldTally


class CompiledField:
    """One field, compiled: `value(node, page, tally)` runs its whole pipeline."""

    __slots__ = ("_post", "_select", "all", "default", "name", "required", "shared")

    def __init__(self, spec: FieldSpec, parser: str, tz: Any, fast: Any = None) -> None:
        # Fields with the same selector and `all` select the same raw value.
        self.shared = (spec.selector, spec.all) if spec.selector is not None else None
        self.name, self.all, self.default, self.required = (
            spec.name,
            spec.all,
            spec.default,
            spec.required,
        )
        self._select = _compile_select(spec, parser, fast)
        self._post = _compile_post(spec, parser, tz)

    def value(
        self, node: Any, page: PageData, tally: FieldTally, selected: dict[Any, Any] | None = None
    ) -> tuple[Any, bool]:
        """(the field's final value, whether it was missing before `default`); `selected`
        holds the raw values of the record's fields so far, by selector and `all`."""
        if selected is None or self.shared is None:
            raw = self._select(node, page)
        elif self.shared in selected:
            raw = selected[self.shared]
        else:
            raw = selected[self.shared] = self._select(node, page)
        post = self._post
        if self.all:
            values = raw if isinstance(raw, list) else ([] if raw is None else [raw])
            out = []
            for v in values:
                if post is not None and v is not None:
                    try:
                        v = post(v, page)
                    except Invalid:
                        tally.invalid_value(self.name, v)
                        continue
                if not is_missing(v):
                    out.append(v)
            missing = not out
            return (self.default if missing and self.default is not None else out), missing
        if post is not None and raw is not None:
            try:
                raw = post(raw, page)
            except Invalid:
                tally.invalid_value(self.name, raw)
                raw = None
        if raw is None or raw == "" or raw == []:
            return self.default, True
        return raw, False


def _compile_post(spec: FieldSpec, parser: str, tz: Any) -> Callable[[Any, PageData], Any] | None:
    """strip → regex → type for one value (not None), as one function; None when the field
    has none of them (the value is kept as selected)."""
    strip = spec.strip and parser == "html" and spec.selector is not None
    regex = re.compile(spec.regex) if spec.regex is not None else None
    conv = CONVERTERS[spec.type] if spec.type else None
    if not strip and regex is None and conv is None:
        return None
    group = 1 if regex is not None and regex.groups else 0
    wants_base = spec.type == "url"  # `<base href>` is looked up only for links

    def post(value: Any, page: PageData) -> Any:
        if strip and value.__class__ is str:
            value = " ".join(value.split())
        if regex is not None:
            if isinstance(value, (dict, list)):
                raise Invalid("regex on a structure")
            m = regex.search(value if value.__class__ is str else scalar_text(value))
            if m is None:
                return None
            value = m.group(group)
        if value == "" or conv is None:
            return value or None
        try:
            return conv(value, page.base if wants_base else "", tz)
        except Invalid:
            raise
        except (ValueError, ArithmeticError, TypeError, OverflowError) as exc:
            raise Invalid(str(exc)) from exc

    return post


def _text_of(node: Any) -> str:
    if isinstance(node, str):
        return node
    return "".join(node.itertext())


def _compile_select(
    spec: FieldSpec, parser: str, fast: Any = None
) -> Callable[[Any, PageData], Any]:
    """The select (and `all`) step: node → a value, or a list of them with `all`.

    `fast`: for a page parsed by Lexbor, a function compiling a CSS selector for it
    (crawler.lexbor); its selects give strings, as the XPath of `::text`/`::attr()` does."""
    if parser == "json":
        import jmespath

        expr = jmespath.compile(spec.path if spec.path is not None else spec.selector or "@")
        return lambda node, page: expr.search(node)
    if spec.json_ld is not None:
        import jmespath

        ld = jmespath.compile(spec.json_ld)

        def from_json_ld(node: Any, page: PageData) -> Any:
            for doc in page.json_ld():
                found = ld.search(doc)
                if found is not None:
                    return found
            return None

        return from_json_ld
    compile_xpath = fast or _xpath
    if spec.embedded_json is not None:
        import jmespath

        sel = spec.embedded_json
        script = compile_xpath(sel, False)  # on the whole page
        inner = jmespath.compile(spec.path) if spec.path is not None else None

        def from_embedded(node: Any, page: PageData) -> Any:
            doc = page.embedded(sel, script)
            return inner.search(doc) if inner is not None and doc is not None else doc

        return from_embedded
    xp = compile_xpath(spec.selector or "", True)  # on the item
    every = spec.all

    def from_html(node: Any, page: PageData) -> Any:
        result = xp(node)
        if not isinstance(result, list):  # string(), count() and friends return scalars
            return result
        if every:
            return [_text_of(r) for r in result]
        return _text_of(result[0]) if result else None

    return from_html


def _storable(value: Any) -> bool:
    from crawler.storable import storable

    return bool(storable(value) == value)


def _xpath(selector: str, relative: bool) -> Any:
    from lxml import etree

    from crawler.config.selectors import xpath_of

    return etree.XPath(xpath_of(selector), smart_strings=False)


def _spec(spec: Any) -> FieldSpec:
    # A field declared before the configuration knew the pipeline's keys (name, selector, all).
    if isinstance(spec, FieldSpec):
        return spec
    return FieldSpec(name=spec.name, selector=spec.selector, all=spec.all)


def source_timezone(source: Any) -> str:
    """The source's `timezone` (naive times in its pages are in it); UTC by default."""
    return str(getattr(source, "timezone", None) or "UTC")


class FieldSet:
    """A source's fields, compiled once: `record(node, page, tally)` gives one record or None."""

    def __init__(
        self, specs: Iterable[Any], parser: str, tz_name: str = "UTC", fast: Any = None
    ) -> None:
        tz = ZoneInfo(tz_name) if tz_name != "UTC" else timezone.utc
        specs = [_spec(s) for s in specs]
        self.fields = [CompiledField(s, parser, tz, fast) for s in specs]
        self.required = [f.name for f in self.fields if f.required]
        self.names = [f.name for f in self.fields]
        # Whether every value is storable as it comes (crawler.storable): text and attributes
        # out of an HTML parser are (lxml and Lexbor both replace NUL and lone surrogates), and
        # so is what strip, regex and the types make of them; JSON, JSON-LD, embedded JSON and
        # a default written in the configuration may not be.
        # (No fields: no pipeline made the values, so they are not known to be storable.)
        self.storable = (
            parser == "html"
            and bool(specs)
            and all(
                s.selector is not None and _storable(s.name) and _storable(s.default) for s in specs
            )
        )
        # Fields with the same selector select once per record (`title` and `title_words`).
        self._shared = len({s.selector for s in specs}) < len(specs)

    def record(self, node: Any, page: PageData, tally: FieldTally) -> dict[str, Any] | None:
        """The record of `node`; None when nothing matched at all (not a record) or when a
        required field is missing (dropped, counted in `tally`)."""
        rec: dict[str, Any] = {}
        missing: list[str] = []
        selected: dict[Any, Any] | None = {} if self._shared else None
        for f in self.fields:
            value, was_missing = f.value(node, page, tally, selected)
            rec[f.name] = value
            if was_missing:
                missing.append(f.name)
        if len(missing) == len(self.fields):
            return None  # nothing of a record here (a stray item node, an empty page)
        for name in self.required:
            if is_missing(rec[name]):
                tally.dropped += 1
                tally.first_drop.setdefault(name, page.url)
                return None
        for name in missing:
            tally.missing[name] += 1
        return rec
