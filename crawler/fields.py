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

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

from crawler import convert as cv
from crawler.configfile import derived, setting

if TYPE_CHECKING:
    from crawler.metrics import Metrics

log = logging.getLogger("crawler.fields")

TYPES = ("str", "int", "float", "decimal", "bool", "datetime", "url")

# Strings accepted by the `bool` type (after strip, case-insensitive).
_TRUE = frozenset({"true", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "off"})
_SIGNED = re.compile(r"^\s*[-\u2212]\s*\D{0,4}\d")  # "-3", "- £3", "-€3", U+2212
_ZERO_POINT = re.compile(r"^\s*[-+\u2212]?0[.,](\d+)\s*$")  # 0.123 / 0,123: never thousands
# "12", "-3.5", "0.25": no grouping possible (a lone separator before exactly three digits
# is the ambiguous case, "1.234", which the amount parser reads as thousands).
_PLAIN_NUMBER = re.compile(r"[-+]?\d{1,30}(?:\.(?:\d{1,2}|\d{4,30}))?\Z")
_ABSOLUTE = ("http://", "https://")
_ORIGIN = re.compile(r"https?://[^/?#]+")  # lower-case scheme: urljoin would lower it
_MAX_TEXT = 256  # longer strings are not numbers or dates: do not feed them to the parsers


class Invalid(ValueError):
    """Raised inside this module when a value does not convert (never leaves it)."""


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
    from crawler.selectors import check_selector

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


# --------------------------------------------------------------------------- per-run tally


INVALID_EXAMPLES = 3


@dataclass
class FieldTally:
    """What the pipeline saw in one run: missing and invalid fields, dropped records.

    The pipeline flushes it into metrics after each page (`take()`), and logs the first dropped
    record of each required field once per run (`first_drop`).
    """

    missing: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    first_drop: dict[str, str] = field(default_factory=dict)  # field → example URL
    reported: set[str] = field(default_factory=set)  # fields already logged this run
    # A few of the values that did not convert, per field (`crawler preview` shows them).
    invalid_examples: dict[str, list[str]] = field(default_factory=dict)

    def invalid_value(self, name: str, value: Any) -> None:
        """Count a value of field `name` that did not convert; keep the first few, clipped."""
        self.invalid[name] += 1
        examples = self.invalid_examples.setdefault(name, [])
        if len(examples) < INVALID_EXAMPLES:
            text = repr(value)
            examples.append(text if len(text) <= 60 else text[:59] + "…")

    def flush(self, metrics: Metrics, source: str) -> None:
        """Add the counts since the last flush to the metrics; log each required field's first
        drop of the run (WARNING, with an example URL)."""
        for name, n in self.missing.items():
            metrics.fields_missing.labels(source, name).inc(n)
        for name, n in self.invalid.items():
            metrics.fields_invalid.labels(source, name).inc(n)
        if self.dropped:
            metrics.records_dropped.labels(source, "missing_required").inc(self.dropped)
        for name, url in self.first_drop.items():
            if name not in self.reported:
                self.reported.add(name)
                log.warning(
                    "record dropped: a required field is missing (logged once per run and field)",
                    extra={"source": source, "field": name, "url": url},
                )
        self.missing, self.invalid, self.dropped = Counter(), Counter(), 0


# --------------------------------------------------------------------------- type converters


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        raise Invalid(f"{value!r} is a boolean")
    if isinstance(value, (int, float)):
        return repr(value)
    raise Invalid(f"{type(value).__name__} is not a scalar")


def _number(value: Any) -> Decimal:
    """A number from a JSON number or a human-written amount in any common locale.

    "1.234,56" and "1,234.56" are both 1234.56; "£51.77" is 51.77; a lone separator before
    exactly three digits groups thousands ("1,234" is 1234), except after a leading 0 ("0,123").
    """
    if isinstance(value, bool):
        raise Invalid("a boolean is not a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Invalid(f"{value!r} is not a finite number")
        return Decimal(repr(value))
    text = _text(value)
    if _PLAIN_NUMBER.match(text):  # the common case, without the amount parser
        return Decimal(text)
    if len(text) > _MAX_TEXT or not any(c.isdigit() for c in text):
        raise Invalid(f"{text[:40]!r} holds no number")  # price-parser reads "free" as 0
    zero = _ZERO_POINT.match(text)
    if zero:
        amount: Decimal | None = Decimal("0." + zero.group(1))
    else:
        from price_parser import Price  # made for "£1.234,56"-style amounts

        amount = Price.fromstring(text).amount
    if amount is None:
        raise Invalid(f"{text[:40]!r} holds no number")
    # price-parser reads amounts, which it takes as unsigned: put a leading minus back.
    return -amount if _SIGNED.match(text) and amount > 0 else amount


def _to_int(value: Any, base: str, tz: Any) -> int:
    n = _number(value)
    if n != n.to_integral_value():
        raise Invalid(f"{n} is not a whole number")
    return int(n)


def _to_float(value: Any, base: str, tz: Any) -> float:
    if isinstance(value, str):
        try:  # plain machine notation first: "1e-3", "2.5"
            f = float(value)
        except ValueError:
            f = float(_number(value))
        if not math.isfinite(f):
            raise Invalid(f"{value[:40]!r} is not a finite number")
        return f
    return float(_number(value))


def _to_decimal(value: Any, base: str, tz: Any) -> int | float:
    n = _number(value)
    # A JSON number: whole amounts stay integers; float's shortest repr keeps "51.77" as is.
    return int(n) if n == n.to_integral_value() else float(n)


def _to_bool(value: Any, base: str, tz: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise Invalid(f"{str(value)[:40]!r} is not true/false, yes/no, 1/0 or on/off")


def _to_datetime(value: Any, base: str, tz: Any) -> str:
    """ISO 8601 in UTC. Naive times are in the source's time zone; numbers are Unix time."""
    if isinstance(value, bool):
        raise Invalid("a boolean is not a time")
    if isinstance(value, (int, float)):
        seconds = float(value) / 1000 if abs(value) > 1e11 else float(value)  # ms since epoch
        try:
            when = datetime.fromtimestamp(seconds, timezone.utc)
        except (OverflowError, OSError, ValueError) as exc:
            raise Invalid(f"{value!r} is not a Unix time") from exc
    else:
        text = _text(value)
        if not text or len(text) > _MAX_TEXT:
            raise Invalid("no time")
        from dateutil import parser as dateparser  # ISO 8601 and the common written forms

        try:
            when = dateparser.isoparse(text)
        except (ValueError, OverflowError):
            if len(text) < 6 or not any(c.isdigit() for c in text):
                raise Invalid(f"{text[:40]!r} is not a date") from None
            try:
                when = dateparser.parse(text)
            except (ValueError, OverflowError) as exc:
                raise Invalid(f"{text[:40]!r} is not a date") from exc
        if when.tzinfo is None:
            when = when.replace(tzinfo=tz)
    return when.astimezone(timezone.utc).isoformat()


def _to_url(value: Any, base: str, tz: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("not a link")
    link: str = value.strip()
    if link.startswith("/") and not link.startswith("//") and "/." not in link:
        # Root-relative, nothing to normalise (most links): scheme and host of the base.
        # (urljoin costs tens of microseconds a call, on every link of every page.)
        origin = _ORIGIN.match(base)
        if origin is not None:
            return origin.group(0) + link
    if (
        link.startswith(_ABSOLUTE)
        and "/." not in link
        and " " not in link
        and urlsplit(link).netloc
    ):
        return link
    joined = urljoin(base, link)
    parts = urlsplit(joined)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Invalid(f"{joined[:60]!r} is not an http(s) URL")
    return joined


def _to_str(value: Any, base: str, tz: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


_CONVERTERS: dict[str, Callable[[Any, str, Any], Any]] = {
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "decimal": _to_decimal,
    "bool": _to_bool,
    "datetime": _to_datetime,
    "url": _to_url,
}


def convert(type_: str, value: Any, base_url: str, tz: Any) -> Any:
    """`value` as `type_`; raise Invalid when it does not convert."""
    try:
        return _CONVERTERS[type_](value, base_url, tz)
    except Invalid:
        raise
    except (ValueError, ArithmeticError, TypeError, OverflowError) as exc:
        raise Invalid(str(exc)) from exc


# --------------------------------------------------------------------------- compiled fields


def is_missing(value: Any) -> bool:
    return value is None or value == "" or value == []


class PageData:
    """One page as the fields see it: its URL, its parsed document, and the structured data
    parsed from it on first use (JSON-LD, embedded JSON), shared by every record of the page."""

    __slots__ = ("_base", "_embedded", "_json_ld", "lexbor", "root", "url")

    def __init__(self, url: str, root: Any, lexbor: bool = False) -> None:
        self.url, self.root, self.lexbor = url, root, lexbor
        self._json_ld: list[Any] | None = None
        self._embedded: dict[str, Any] = {}
        self._base: str | None = None

    @property
    def base(self) -> str:
        """The URL relative links resolve against: `<base href>` if the page has one."""
        if self._base is None:
            self._base = self.url
            if self.lexbor:
                from crawler.lexbor import base_href

                href = base_href(self.root)
            else:
                finder = getattr(self.root, "find", None)
                el = finder(".//base[@href]") if finder is not None else None
                href = None if el is None else el.get("href")
            if href is not None:
                self._base = urljoin(self.url, href.strip())
        return self._base

    def json_ld(self) -> list[Any]:
        """Every schema.org object in the page's `application/ld+json` scripts (lists and
        `@graph` flattened); a script that is not valid JSON is skipped."""
        if self._json_ld is None:
            found: list[Any] = []
            if self.lexbor:
                from crawler.lexbor import ld_json_scripts

                texts = ld_json_scripts(self.root)
            else:
                texts = [script.text for script in _ld_xpath()(self.root)]
            for text in texts:
                doc = _loads(text)
                stack = [doc]
                while stack:
                    item = stack.pop(0)
                    if isinstance(item, list):
                        stack[:0] = item
                    elif isinstance(item, dict):
                        found.append(item)
                        graph = item.get("@graph")
                        if isinstance(graph, list):
                            stack.extend(graph)
            self._json_ld = found
        return self._json_ld

    def embedded(self, selector: str, xp: Any) -> Any:
        if selector not in self._embedded:
            doc = None
            for el in xp(self.root):
                doc = _loads(el if isinstance(el, str) else el.text)
                if doc is not None:
                    break
            self._embedded[selector] = doc
        return self._embedded[selector]


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


_LD: list[Any] = []  # the JSON-LD script XPath, built on first use (lxml imported lazily)


def _ld_xpath() -> Any:
    if not _LD:
        from lxml import etree

        _LD.append(
            etree.XPath(
                "//script[translate(@type, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ',"
                " 'abcdefghijklmnopqrstuvwxyz')='application/ld+json']"
            )
        )
    return _LD[0]


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
    conv = _CONVERTERS[spec.type] if spec.type else None
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
            m = regex.search(value if value.__class__ is str else _text(value))
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

    from crawler.selectors import xpath_of

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
