"""What a response body is: whether its content type suits the source's parser, and its charset.

These are extraction's rules (the parser decides what it can read), applied by the fetcher
before it reads a body, so a page of the wrong type costs no download.
"""

from __future__ import annotations

import codecs
import re

from crawler.errors import ErrorKind, FetchError

# Content types each parser accepts. JSON APIs are often served as text or JavaScript.
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_JSON_TYPES = frozenset(
    {"application/json", "text/json", "text/plain", "text/javascript", "application/javascript"}
)
# Feeds and sitemaps are XML under many names; sitemaps also come as gzip files.
_XML_TYPES = frozenset({"application/xml", "text/xml", "text/plain"})
_GZIP_TYPES = frozenset({"application/gzip", "application/x-gzip", "application/octet-stream"})
_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:+-]{1,40})""", re.I
)
_SNIFF_BYTES = 4096


def check_content_type(parser: str, declared: bool, ctype: str) -> None:
    """Raise BAD_CONTENT unless the response's type suits the source's parser."""
    if not declared:
        return  # nothing declared (aiohttp then says octet-stream): let the parser judge
    ctype = ctype.lower()
    if parser == "json":
        ok = ctype in _JSON_TYPES or ctype.endswith("+json")
    elif parser in ("feed", "sitemap"):
        ok = ctype in _XML_TYPES or ctype.endswith("+xml")
        ok = ok or (parser == "sitemap" and ctype in _GZIP_TYPES)
    else:
        ok = ctype in _HTML_TYPES
    if not ok:
        raise FetchError(ErrorKind.BAD_CONTENT, f"content type {ctype!r} is not {parser}")


def _valid_charset(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def choose_charset(header_charset: str | None, body: bytes, parser: str) -> str:
    """The body's charset: the header's, else a BOM or <meta> (HTML), else UTF-8.

    Never None: lxml, left to guess, reads a page without <meta> as Latin-1, and most of the
    web is UTF-8. Bytes invalid in the chosen charset become U+FFFD in the parsers.
    """
    found = _valid_charset(header_charset)
    if found:
        return found
    if body.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if parser == "html":
        m = _META_CHARSET.search(body[:_SNIFF_BYTES])
        if m:
            found = _valid_charset(m.group(1).decode("ascii"))
            if found:
                return found
    return "utf-8"
