"""Sitemaps (plain, gzipped, indexes, hostile) and feeds (RSS 2.0, RSS 1.0, Atom)."""

from __future__ import annotations

import gzip

import pytest

from crawler.config.sources import ENTRY_KEYS
from crawler.errors import ErrorKind, FetchError
from crawler.sources.feed import parse_feed
from crawler.sources.sitemap import INDEX, URLSET, Entry, parse_lastmod, parse_sitemap

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(n: int, lastmod: str | None = "2026-11-01") -> bytes:
    mod = f"<lastmod>{lastmod}</lastmod>" if lastmod else ""
    rows = "".join(f"<url><loc> https://s.example/p/{i} </loc>{mod}</url>" for i in range(n))
    return f'<?xml version="1.0" encoding="UTF-8"?><urlset {NS}>{rows}</urlset>'.encode()


def test_urlset_plain_and_gzipped_give_the_same_entries():
    plain = parse_sitemap(urlset(3), limit=100, max_bytes=10**6)
    packed = parse_sitemap(gzip.compress(urlset(3)), limit=100, max_bytes=10**6)
    assert plain == packed
    assert plain.kind == URLSET and not plain.truncated
    assert plain.entries[0] == Entry("https://s.example/p/0", parse_lastmod("2026-11-01"))


def test_index_and_limit():
    index = (
        f"<sitemapindex {NS}><sitemap><loc>https://s.example/a.xml.gz</loc>"
        "<lastmod>2026-11-02T10:00:00+01:00</lastmod></sitemap>"
        "<sitemap><loc>https://s.example/b.xml</loc></sitemap></sitemapindex>"
    ).encode()
    parsed = parse_sitemap(index, limit=10, max_bytes=10**6)
    assert parsed.kind == INDEX
    assert parsed.entries == (
        Entry("https://s.example/a.xml.gz", parse_lastmod("2026-11-02T09:00:00Z")),
        Entry("https://s.example/b.xml", None),
    )
    cut = parse_sitemap(urlset(50), limit=7, max_bytes=10**6)
    assert len(cut.entries) == 7 and cut.truncated


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2026-11-22", "2026-11-22T00:00:00+00:00"),
        ("2026-11", "2026-11-01T00:00:00+00:00"),
        ("2026", "2026-01-01T00:00:00+00:00"),
        ("2026-11-22T10:30:00Z", "2026-11-22T10:30:00+00:00"),
        ("2026-11-22T10:30+02:00", "2026-11-22T08:30:00+00:00"),
        ("2026-11-22T10:30:00.5", "2026-11-22T10:30:00.500000+00:00"),
    ],
)
def test_lastmod_formats(text: str, iso: str):
    from datetime import datetime, timezone

    value = parse_lastmod(text)
    assert value is not None
    assert datetime.fromtimestamp(value, timezone.utc).isoformat() == iso


@pytest.mark.parametrize("text", [None, "", "yesterday", "2026-13-45"])
def test_bad_lastmod_is_none(text: str | None):
    assert parse_lastmod(text) is None


def test_gzip_bomb_stops_at_the_cap():
    bomb = gzip.compress(b"<urlset>" + b" " * 5_000_000)
    with pytest.raises(FetchError) as err:
        parse_sitemap(bomb, limit=10, max_bytes=1_000_000)
    assert err.value.kind is ErrorKind.TOO_LARGE


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>not a sitemap</body></html>",
        b"<urlset><url><loc>x</loc>",
        b"",
        gzip.compress(urlset(3))[:-20],
        b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<urlset><url><loc>&e;</loc></url></urlset>",
    ],
)
def test_not_a_sitemap_is_a_parse_error(body: bytes):
    try:
        parsed = parse_sitemap(body, limit=10, max_bytes=10**6)
    except FetchError as exc:
        assert exc.kind is ErrorKind.PARSE
    else:  # the external entity case may parse: it must never have been resolved
        assert all("root:" not in e.loc for e in parsed.entries)


RSS2 = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>News</title>
<item><guid>n-1</guid><link>https://n.example/a/1</link><title> First </title>
<pubDate>Sun, 22 Nov 2026 10:00:00 +0100</pubDate><description>&lt;b&gt;One&lt;/b&gt;&lt;script&gt;x()&lt;/script&gt;</description>
<author>ed@n.example (Ed)</author><category>tech</category><category>pi</category></item>
<item><link>https://n.example/a/2</link><title>Second</title></item>
</channel></rss>"""

RSS1 = b"""<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
 xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="https://n.example/"><title>N</title><link>https://n.example/</link></channel>
<item rdf:about="https://n.example/r/1"><title>R1</title><link>https://n.example/r/1</link>
<dc:date>2026-11-22T09:00:00Z</dc:date></item></rdf:RDF>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">
<title>A</title><id>urn:a</id><updated>2026-11-22T12:00:00Z</updated>
<entry><id>urn:a:1</id><title>Atom one</title><link href="https://n.example/atom/1"/>
<published>2026-11-21T23:30:00-02:00</published><updated>2026-11-22T12:00:00Z</updated>
<summary>S</summary><author><name>Ann</name></author><category term="x"/></entry></feed>"""


def test_rss2_entries_normalised():
    first, second = parse_feed(RSS2)
    assert set(first) == set(ENTRY_KEYS)
    assert first["id"] == "n-1" and first["title"] == "First"
    assert first["published"] == "2026-11-22T09:00:00Z"
    assert first["updated"] == "2026-11-22T09:00:00Z"  # none given: the publication time
    assert first["tags"] == ["tech", "pi"]
    assert "<script" not in first["summary"] and "One" in first["summary"]
    assert second["id"] == "https://n.example/a/2"  # no guid: the link identifies it
    assert second["published"] is None and second["tags"] == []


def test_rss1_and_atom():
    (r1,) = parse_feed(RSS1)
    assert (r1["id"], r1["link"], r1["published"]) == (
        "https://n.example/r/1",
        "https://n.example/r/1",
        "2026-11-22T09:00:00Z",
    )
    (a1,) = parse_feed(ATOM)
    assert a1 == {
        "id": "urn:a:1",
        "link": "https://n.example/atom/1",
        "title": "Atom one",
        "published": "2026-11-22T01:30:00Z",
        "updated": "2026-11-22T12:00:00Z",
        "summary": "S",
        "author": "Ann",
        "tags": ["x"],
    }


@pytest.mark.parametrize("body", [b"<html><body>hi</body></html>", b"", b"{}", b"https://n/f.xml"])
def test_not_a_feed(body: bytes):
    with pytest.raises(FetchError) as err:
        parse_feed(body)
    assert err.value.kind is ErrorKind.PARSE
