"""The configuration of how a source reaches its pages: `paginate`, `follow` and `sitemap`.

Each is optional on a source and each carries a required bound (`max_pages`, `max_per_run`,
`max_urls`): a run's work and its frontier must stay bounded on a 1 GB Pi, whatever the site
does. Cross-key problems (two pagination kinds, a cursor without its parameter, ...) come out
of `check()` as `(relative key, message)`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

PAGINATION_KINDS = ("next", "cursor", "link_header", "page_param")
FOLLOW_PARSERS = ("html", "json")
# Parsers whose pages can give links to follow (a feed gives its entries' `link`).
LINK_PARSERS = ("html", "json", "feed")
# sitemaps.org caps a sitemap at 50,000 URLs and 50 MB uncompressed.
SITEMAP_MAX_BYTES = 50 * 10**6


@dataclass(frozen=True, kw_only=True)
class PaginateConfig:
    """How a listing page leads to the next one: exactly one kind, and a bound."""

    next: str | None = None  # selector (html) / JMESPath (json) giving the next page's URL
    cursor: str | None = None  # JMESPath to a cursor value …
    param: str | None = None  # … put into this query parameter of the current URL
    link_header: str | None = None  # the `rel` of the RFC 8288 Link header to follow
    page_param: str | None = None  # a query parameter incremented page by page
    start: int = 1  # page_param's first value
    max_pages: int = 0  # pages per start URL at most (required)

    @property
    def kind(self) -> str:
        for name in PAGINATION_KINDS:
            if getattr(self, name) is not None:
                return name
        return ""

    def check(self) -> Iterable[tuple[str, str]]:
        given = [k for k in PAGINATION_KINDS if getattr(self, k) is not None]
        if not given:
            yield "", f"needs one of {', '.join(PAGINATION_KINDS)}"
        for extra in given[1:]:
            yield extra, f"use one pagination kind, not {given[0]} and {extra}"
        if self.cursor is not None and self.param is None:
            yield "param", "cursor needs `param`: the query parameter that carries the cursor"
        if self.param is not None and self.cursor is None:
            yield "param", "only used with `cursor`"
        if self.start != 1 and self.page_param is None:
            yield "start", "only used with `page_param`"


@dataclass(frozen=True, kw_only=True)
class FollowConfig:
    """Links on listing pages fetched as detail pages, which give the records."""

    links: str = ""  # selector (html), JMESPath (json) or entry key (feed); required
    parser: str = "html"  # the detail pages' parser
    include: tuple[re.Pattern[str], ...] = ()  # absolute URL must match one (when given)
    exclude: tuple[re.Pattern[str], ...] = ()  # absolute URL must match none
    same_host: bool = True
    max_per_run: int = 0  # detail pages fetched per run at most (required)
    refresh_after: float | None = None  # None: fetched on every run

    def check(self) -> Iterable[tuple[str, str]]:
        if self.parser not in FOLLOW_PARSERS:
            yield "parser", f"must be one of {', '.join(FOLLOW_PARSERS)}"


@dataclass(frozen=True, kw_only=True)
class SitemapConfig:
    """URLs taken from a sitemap, a sitemap index, or the sitemaps a robots.txt names."""

    url: str = ""  # a sitemap URL, or `robots` (required)
    site: str | None = None  # with url: robots, the site whose robots.txt names the sitemaps
    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()
    max_urls: int = 0  # page URLs taken per run at most (required)
    changed_only: bool = False  # only URLs whose <lastmod> is newer than their last fetch
    max_bytes: int = SITEMAP_MAX_BYTES  # per sitemap document, after decompression

    def check(self) -> Iterable[tuple[str, str]]:
        if self.url == "robots" and not self.site:
            yield "site", "url: robots needs `site: https://…` (whose robots.txt to read)"
        if self.site is not None and self.url != "robots":
            yield "site", "only used with `url: robots`"


def url_wanted(
    url: str, include: tuple[re.Pattern[str], ...], exclude: tuple[re.Pattern[str], ...]
) -> bool:
    """True when `url` matches one of `include` (or there is none) and none of `exclude`."""
    if include and not any(p.search(url) for p in include):
        return False
    return not any(p.search(url) for p in exclude)
