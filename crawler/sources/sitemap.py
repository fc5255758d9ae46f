"""Sitemaps (sitemaps.org): a `<urlset>` of page URLs or a `<sitemapindex>` of more sitemaps.

A sitemap may be 50 MB of XML and may come gzipped (`.xml.gz`, served as a file rather than
with Content-Encoding), so it is decompressed and parsed in chunks, and every element is
dropped once read: memory stays at one chunk plus the entries kept, whatever the file's size.
Parsing stops at a decompressed-size cap and once `limit` entries are read. The XML parser
resolves no entities and loads nothing from the network (no billion laughs, no XXE).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from crawler.errors import ErrorKind, FetchError

URLSET, INDEX = "urlset", "sitemapindex"
MAX_DEPTH = 3  # the configured sitemap is level 1; an index's children level 2, and so on
_CHUNK = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Entry:
    """A `<url>` or `<sitemap>`: its location and its `<lastmod>` (Unix time) if given."""

    loc: str
    lastmod: float | None = None


@dataclass(frozen=True)
class Sitemap:
    """A parsed sitemap document: its kind, its entries, and whether `limit` cut it short."""

    kind: str
    entries: tuple[Entry, ...]
    truncated: bool = False


def parse_lastmod(text: str | None) -> float | None:
    """A W3C datetime (`2026-11-22`, `2026-11-22T10:00:00+01:00`, …Z) as Unix time, or None.

    A date without a time is midnight UTC; a time without a zone is taken as UTC."""
    if not text:
        return None
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if len(text) == 7:  # YYYY-MM
        text += "-01"
    elif len(text) == 4 and text.isdigit():  # YYYY
        text += "-01-01"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _chunks(body: bytes, max_bytes: int) -> Iterator[bytes]:
    """The document's bytes in chunks, gunzipped when gzipped, at most `max_bytes` in all."""
    total = 0
    if body[:2] == _GZIP_MAGIC:
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        for pos in range(0, len(body), _CHUNK):
            data = body[pos : pos + _CHUNK]
            while data and not inflate.eof:
                try:
                    # At most one chunk out per call: a gzip bomb expands no further than read.
                    out = inflate.decompress(data, _CHUNK)
                except zlib.error as exc:
                    raise FetchError(ErrorKind.PARSE, f"sitemap: bad gzip data: {exc}") from exc
                total += len(out)
                if total > max_bytes:
                    raise FetchError(
                        ErrorKind.TOO_LARGE, f"sitemap over {max_bytes} bytes unpacked"
                    )
                if out:
                    yield out
                data = inflate.unconsumed_tail
            if inflate.eof:
                return
        raise FetchError(ErrorKind.PARSE, "sitemap: gzip data cut short")
    if len(body) > max_bytes:
        raise FetchError(ErrorKind.TOO_LARGE, f"sitemap over {max_bytes} bytes")
    for pos in range(0, len(body), _CHUNK):
        yield body[pos : pos + _CHUNK]


def _local(tag: object) -> str:
    if not isinstance(tag, str):  # comments, processing instructions
        return ""
    return tag.rsplit("}", 1)[-1]


def parse_sitemap(body: bytes, limit: int, max_bytes: int) -> Sitemap:
    """The entries of a sitemap or sitemap index, at most `limit` of them.

    Raise FetchError(PARSE) for a document that is neither, TOO_LARGE past `max_bytes`."""
    from lxml import etree

    parser = etree.XMLPullParser(
        events=("start", "end"), resolve_entities=False, no_network=True, huge_tree=False
    )
    kind = ""
    entries: list[Entry] = []
    loc: str | None = None
    lastmod: str | None = None
    truncated = False
    try:
        for chunk in _chunks(body, max_bytes):
            parser.feed(chunk)
            for event, elem in parser.read_events():
                name = _local(elem.tag)
                if event == "start":
                    if not kind:
                        if name not in (URLSET, INDEX):
                            raise FetchError(
                                ErrorKind.PARSE, f"not a sitemap: root element <{name}>"
                            )
                        kind = name
                    continue
                if name == "loc":
                    loc = (elem.text or "").strip()
                elif name == "lastmod":
                    lastmod = elem.text
                elif name in ("url", "sitemap"):
                    if loc:
                        if len(entries) >= limit:
                            truncated = True
                            break
                        entries.append(Entry(loc, parse_lastmod(lastmod)))
                    loc = lastmod = None
                    elem.clear()  # the whole point of streaming: keep nothing read
                    parent = elem.getparent()
                    if parent is not None:
                        while elem.getprevious() is not None:
                            del parent[0]
            if truncated:
                break
        if not truncated:
            parser.close()
    except etree.XMLSyntaxError as exc:
        raise FetchError(ErrorKind.PARSE, f"sitemap XML does not parse: {exc}") from exc
    if not kind:
        raise FetchError(ErrorKind.PARSE, "empty sitemap document")
    return Sitemap(kind, tuple(entries), truncated)
