"""Extraction: a page's bytes in, keyed records out.

HTML selectors are CSS (parsel's dialect, with `::text` and `::attr(name)`) or XPath with an
`xpath:` prefix; both are compiled once per source into lxml XPath objects, because a
Raspberry Pi core is slow and re-translating selectors per page is wasted work. JSON uses
compiled JMESPath expressions.

Each record gets a key: the configured key fields (a single short scalar is kept readable),
or a hash of the whole record, so the same record crawled twice is stored once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from crawler.config.selectors import xpath_of
from crawler.config.sources import SourceConfig
from crawler.errors import ErrorKind, FetchError
from crawler.record import Record, dumps
from crawler.sources.fields import FieldSet, source_timezone
from crawler.sources.pagedata import PageData
from crawler.sources.tally import FieldTally
from crawler.storable import storable_record

MAX_READABLE_KEY = 200
# Lexbor's tree building is quadratic in nesting depth (20,000 nested <div>s: 1.3 s on an x86
# core, 100,000: over 30 s; libxml2 stops at depth 256): a page with more tags than this goes
# through lxml, with the same results (crawler.lexbor), at lxml's speed. Listing pages have a
# few hundred.
LEXBOR_MAX_TAGS = 5000


def make_key(key_fields: tuple[str, ...], data: dict[str, Any]) -> str:
    """The record's idempotency key: readable for one short scalar field, else a hash."""
    if key_fields:
        values = [data.get(k) for k in key_fields]
        if (
            len(values) == 1
            and isinstance(values[0], (str, int))
            and not isinstance(values[0], bool)
            and 0 < len(str(values[0])) <= MAX_READABLE_KEY
        ):
            return str(values[0])
        if all(isinstance(v, str) for v in values):
            # The common case, kept cheap: strings joined by a separator they cannot contain.
            material = "\x1f".join(values)  # type: ignore[arg-type]
        else:
            material = "\x1e" + dumps(values)
    else:
        material = "\x1d" + dumps(data, sort_keys=True)
    return hashlib.blake2b(material.encode(), digest_size=16).hexdigest()


_Parse = Callable[[bytes, "str | None"], Any]
_Rows = Callable[[Any, PageData, FieldTally], "list[dict[str, Any]]"]


class Extractor:
    """Compiled extraction rules for one source (with `parser`: for its followed pages).

    `parse()` turns a body into a document and `records()` a document into records, so the
    discovery of links and next pages reads the same parsed document as the fields do.
    """

    def __init__(
        self, source: SourceConfig, parser: str | None = None, lexbor: bool = True
    ) -> None:
        self.source = source
        self.parser = parser or source.parser
        self._lxml: Extractor | None = None  # a Lexbor source's extractor for huge pages
        self._parse: _Parse
        self._rows: _Rows
        # Compiled once per source: selectors, regexes, converters, the time zone. (A feed's
        # `fields` only pick and rename entry keys: no pipeline to compile for them.)
        piped = source.fields if self.parser in ("html", "json") else ()
        fast_ok = lexbor and self.parser == "html" and _lexbor_can(source)
        self.engine = "lexbor" if fast_ok else "lxml"
        fast = None
        if self.engine == "lexbor":
            from crawler.sources.lexbor import compile_css

            inside = source.items is not None

            def fast(selector: str, relative: bool) -> Any:
                compiled = compile_css(selector, relative and inside)
                assert compiled is not None  # _lexbor_can() checked every selector
                return compiled

        self.fields = FieldSet(piped, self.parser, source_timezone(source), fast)
        if self.parser == "json":
            self._parse, self._rows = self._compile_json(source)
        elif self.parser == "feed":
            self._parse, self._rows = self._compile_feed(source)
        elif self.engine == "lexbor":
            self._parse, self._rows = self._compile_lexbor(source)
        else:
            self._parse, self._rows = self._compile_html(source)

    def extract(
        self,
        body: bytes,
        charset: str | None = None,
        url: str = "",
        tally: FieldTally | None = None,
    ) -> list[Record]:
        """Records found in `body`; raise FetchError(PARSE) when it cannot be parsed at all."""
        return self.records(self.parse(body, charset), url, tally)

    def parse(self, body: bytes, charset: str | None = None) -> Any:
        """The parsed document; raise FetchError(PARSE) when it cannot be parsed at all."""
        if self.engine == "lexbor" and body.count(b"<") > LEXBOR_MAX_TAGS:
            return _Huge(self._huge().parse(body, charset))
        return _guarded(self._parse, body, charset)

    def engine_of(self, doc: Any) -> str:
        """The engine that parsed `doc` (one of this extractor's documents)."""
        return "lxml" if isinstance(doc, _Huge) else self.engine

    def _huge(self) -> Extractor:
        if self._lxml is None:
            self._lxml = Extractor(self.source, self.parser, lexbor=False)
        return self._lxml

    def records(self, doc: Any, url: str = "", tally: FieldTally | None = None) -> list[Record]:
        """The records of a parsed document fetched from `url` (relative links are joined with
        it); missing and invalid fields and dropped records are counted in `tally`."""
        if isinstance(doc, _Huge):
            return self._huge().records(doc.root, url, tally)
        page = PageData(url, doc, self.engine == "lexbor")
        rows = _guarded(self._rows, doc, page, tally if tally is not None else FieldTally())
        name, key_fields = self.source.name, self.source.key
        # Before the key (a cleaned key field, a stable key); not for values that are storable
        # by construction (FieldSet.storable: text and attributes out of an HTML parser).
        clean = (lambda row: row) if self.fields.storable else storable_record
        records = []
        for row in rows:
            data = clean(row)
            records.append(Record(source=name, key=make_key(key_fields, data), data=data, url=url))
        return records

    # -- HTML -------------------------------------------------------------------------------

    def _compile_html(self, source: SourceConfig) -> tuple[_Parse, _Rows]:
        from lxml import etree, html

        items = etree.XPath(xpath_of(source.items), smart_strings=False) if source.items else None
        parsers: dict[str | None, Any] = {}

        def parser_for(charset: str | None) -> Any:
            p = parsers.get(charset)
            if p is None:
                try:
                    p = html.HTMLParser(encoding=charset, remove_comments=True)
                except LookupError:  # unknown charset from a header: let lxml sniff <meta>
                    p = html.HTMLParser(remove_comments=True)
                parsers[charset] = p
            return p

        def parse(body: bytes, charset: str | None) -> Any:
            try:
                root = etree.fromstring(body, parser_for(charset))
            except (etree.ParserError, etree.XMLSyntaxError, ValueError) as exc:
                raise FetchError(ErrorKind.PARSE, f"HTML does not parse: {exc}") from exc
            if root is None:
                raise FetchError(ErrorKind.PARSE, "empty HTML document")
            return root

        return parse, _rows_of(items, self.fields)

    def _compile_lexbor(self, source: SourceConfig) -> tuple[_Parse, _Rows]:
        from crawler.sources import lexbor

        query = source.items  # elements, no pseudo-element (_lexbor_can)

        def parse(body: bytes, charset: str | None) -> Any:
            try:
                doc = lexbor.parse(body, charset or "utf-8")
            except (LookupError, ValueError) as exc:
                raise FetchError(ErrorKind.PARSE, f"HTML does not parse: {exc}") from exc
            if lexbor.is_empty(doc):  # as lxml, which gives no root
                raise FetchError(ErrorKind.PARSE, "empty HTML document")
            return doc

        items = (lambda doc: doc.css(query)) if query is not None else None
        return parse, _rows_of(items, self.fields)

    # -- JSON -------------------------------------------------------------------------------

    def _compile_json(self, source: SourceConfig) -> tuple[_Parse, _Rows]:
        import jmespath

        items = jmespath.compile(source.items) if source.items else None
        fields = self.fields

        def parse(body: bytes, charset: str | None) -> Any:
            try:
                return json.loads(body.decode(charset or "utf-8", errors="replace"))
            except (ValueError, LookupError) as exc:
                raise FetchError(ErrorKind.PARSE, f"invalid JSON: {exc}") from exc

        def rows(doc: Any, page: PageData, tally: FieldTally) -> list[dict[str, Any]]:
            nodes = items.search(doc) if items is not None else [doc]
            if nodes is None:
                return []
            if not isinstance(nodes, list):
                nodes = [nodes]
            out = []
            for node in nodes:
                rec = fields.record(node, page, tally)
                if rec is not None:
                    out.append(rec)
            return out

        return parse, rows

    # -- feeds ------------------------------------------------------------------------------

    def _compile_feed(self, source: SourceConfig) -> tuple[_Parse, _Rows]:
        from crawler.sources.feed import parse_feed

        # `fields` of a feed select entry keys and rename them: {headline: title}.
        renames = [(f.name, f.selector or f.path or f.name) for f in source.fields]

        def parse(body: bytes, charset: str | None) -> Any:
            return parse_feed(body)

        def rows(
            entries: list[dict[str, Any]], page: PageData, tally: FieldTally
        ) -> list[dict[str, Any]]:
            if not renames:
                return entries
            return [{name: e.get(key) for name, key in renames} for e in entries]

        return parse, rows


def _rows_of(items: Callable[[Any], Any] | None, fields: FieldSet) -> _Rows:
    """The records of a parsed html page: one per `items` match, or the page as one."""

    def rows(doc: Any, page: PageData, tally: FieldTally) -> list[dict[str, Any]]:
        out = []
        for node in items(doc) if items is not None else [doc]:
            rec = fields.record(node, page, tally)
            if rec is not None:
                out.append(rec)
        return out

    return rows


class _Huge:
    """A page of a Lexbor source too big for Lexbor, parsed by lxml (LEXBOR_MAX_TAGS)."""

    __slots__ = ("root",)

    def __init__(self, root: Any) -> None:
        self.root = root


def _lexbor_can(source: SourceConfig) -> bool:
    """Whether the source's pages can go through Lexbor with the same results (crawler.lexbor):
    every selector in its subset, and no discovery reading the parsed page (`follow.links` and
    `paginate.next` select on an lxml tree)."""
    if source.html_engine != "auto" or source.follow is not None:
        return False
    if source.paginate is not None and source.paginate.next is not None:
        return False
    from crawler.sources import lexbor

    if not lexbor.available():
        return False
    inside = source.items is not None
    if source.items is not None and (
        "::" in source.items or lexbor.compile_css(source.items, False) is None
    ):
        return False
    for f in source.fields:
        selector = getattr(f, "selector", None)
        if selector is not None and lexbor.compile_css(selector, inside) is None:
            return False
        embedded = getattr(f, "embedded_json", None)
        if embedded is not None and lexbor.compile_css(embedded, False) is None:
            return False
    return True


def _guarded(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except FetchError:
        raise
    except (ValueError, TypeError, RecursionError, LookupError) as exc:
        # A hostile page (absurd nesting, odd encodings, JMESPath on odd types) costs one
        # failed fetch, never the run.
        raise FetchError(ErrorKind.PARSE, f"extraction failed: {exc!r}") from exc
