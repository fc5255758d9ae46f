"""Feeds: RSS 2.0, RSS 1.0 (RDF) and Atom documents turned into one record per entry.

Parsing is feedparser's: it has absorbed twenty years of broken feeds (wrong encodings,
missing namespaces, four date formats per standard), which is exactly the work we do not want
to own. Each entry becomes `id, link, title, published, updated, summary, author, tags`, with
datetimes in ISO 8601 UTC (`2026-11-22T14:05:00Z`), so one source's records look alike
whichever dialect the site speaks.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import time
from datetime import datetime, timezone
from typing import Any

from crawler.errors import ErrorKind, FetchError

MAX_ENTRIES = 10_000  # a feed is a window on recent items; a hostile one must stay bounded


def iso_utc(parsed: time.struct_time | None) -> str | None:
    """feedparser's UTC struct_time as ISO 8601 with a `Z`, or None."""
    if parsed is None:
        return None
    try:
        seconds = calendar.timegm(parsed)
        return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):  # year 0 or 99999: not a date we can store
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def entry_record(entry: Any) -> dict[str, Any]:
    """One feed entry as a record with the eight keys of `ENTRY_KEYS`."""
    link = _text(entry.get("link"))
    title = _text(entry.get("title"))
    # dict.get: feedparser's own get() maps a missing `updated` onto `published` with a
    # DeprecationWarning; we make that fallback ourselves, documented.
    published = iso_utc(dict.get(entry, "published_parsed"))
    updated = iso_utc(dict.get(entry, "updated_parsed"))
    ident = _text(entry.get("id")) or link
    if ident is None:  # neither guid nor link: the content identifies the entry
        material = f"{title}\x1f{published}\x1f{entry.get('summary')}"
        ident = hashlib.blake2b(material.encode(), digest_size=16).hexdigest()
    tags = [t for t in (_text(tag.get("term")) for tag in entry.get("tags") or ()) if t]
    return {
        "id": ident,
        "link": link,
        "title": title,
        # A feed giving one date gives it for both (RSS 2.0 has pubDate, RSS 1.0 dc:date).
        "published": published or updated,
        "updated": updated or published,
        "summary": _text(entry.get("summary")),
        "author": _text(entry.get("author")),
        "tags": tags,
    }


def parse_feed(body: bytes) -> list[dict[str, Any]]:
    """The entries of an RSS or Atom document; raise FetchError(PARSE) when it is not one."""
    import feedparser

    # sanitize_html strips scripts and event handlers from summaries; relative links in them
    # are resolved by feedparser against the feed's own base.
    # A file object, never the bytes themselves: feedparser takes a string for a URL or a
    # path and would fetch it itself, past robots.txt and every limit of the fetch layer.
    parsed = feedparser.parse(io.BytesIO(body), sanitize_html=True, resolve_relative_uris=True)
    if not parsed.get("version"):
        problem = parsed.get("bozo_exception")
        why = f": {str(problem).splitlines()[0]}" if problem else ""
        raise FetchError(ErrorKind.PARSE, f"not an RSS or Atom feed{why}")
    return [entry_record(e) for e in parsed.entries[:MAX_ENTRIES]]
