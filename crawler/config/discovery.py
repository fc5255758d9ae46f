"""The configuration of how a source reaches its pages: `paginate`, `follow` and `sitemap`.

Each is optional on a source and each carries a required bound (`max_pages`, `max_per_run`,
`max_urls`): a run's work and its frontier must stay bounded on a 1 GB Pi, whatever the site
does. Rules within one section come out of its `check()`; rules that need the source (its
parser, a sitemap next to a follow) are in `SourceConfig.check()` via `source_problems()`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from crawler.config import convert as cv
from crawler.config.loader import REQUIRED, setting

PAGINATION_KINDS = ("next", "cursor", "link_header", "page_param")
FOLLOW_PARSERS = ("html", "json")
# Parsers whose pages can give links to follow (a feed gives its entries' `link` or `id`).
LINK_PARSERS = ("html", "json", "feed")
FEED_LINK_KEYS = ("link", "id")
# sitemaps.org caps a sitemap at 50,000 URLs and 50 MB uncompressed.
SITEMAP_MAX_BYTES = 50 * 10**6

# Page roles: the `role` label of crawler_source_pages_total.
LISTING, DETAIL, SITEMAP, FEED = "listing", "detail", "sitemap", "feed"
ROLES = (LISTING, DETAIL, SITEMAP, FEED)
# Why a link found on a page was not followed: the `reason` label of
# crawler_source_links_skipped_total.
SEEN, EXCLUDED, OFF_HOST, BOUND, FRESH = "seen", "excluded", "off_host", "bound", "fresh"
SKIP_REASONS = (SEEN, EXCLUDED, OFF_HOST, BOUND, FRESH)
# The bounds a run can hit: the `bound` label of crawler_source_bound_hits_total.
BOUNDS = ("max_pages", "max_per_run", "max_urls")


def _sitemap_url(value: Any) -> str:
    if value == "robots":
        return "robots"
    try:
        return cv.http_url(value)
    except ValueError:
        raise ValueError(f"{value!r} is neither an http(s) URL nor `robots`") from None


@dataclass(frozen=True, kw_only=True)
class PaginateConfig:
    """How a listing page leads to the next one: exactly one kind, and a bound."""

    next: str | None = setting(
        None,
        cv.string,
        "selector (html) or JMESPath (json) giving the next page's URL, joined with the page's",
    )
    cursor: str | None = setting(
        None, cv.string, "JMESPath (json) to a cursor value, put into the query parameter `param`"
    )
    param: str | None = setting(None, cv.string, "the query parameter that carries `cursor`")
    link_header: str | None = setting(
        None, cv.string, "the `rel` of the RFC 8288 `Link` header to follow (`next`)"
    )
    page_param: str | None = setting(
        None, cv.string, "a query parameter incremented page by page (`page`)"
    )
    start: int = setting(1, cv.whole_number, "`page_param`'s value on the start URL when absent")
    max_pages: int = setting(
        REQUIRED,
        cv.positive_int,
        "pages per start URL at most, the first included (required: a site can paginate forever)",
    )

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

    links: str = setting(
        REQUIRED,
        cv.string,
        "selector (html) or JMESPath (json) of the links on a listing page; with `parser: feed` "
        "the entry key `link` (or `id`)",
    )
    parser: str = setting(
        "html", cv.choice(*FOLLOW_PARSERS), "the detail pages' parser: `html` or `json`"
    )
    include: tuple[re.Pattern[str], ...] = setting(
        (), cv.regex_list, "regexes: a link's absolute URL must match one (when given)"
    )
    exclude: tuple[re.Pattern[str], ...] = setting(
        (), cv.regex_list, "regexes: a link's absolute URL must match none"
    )
    same_host: bool = setting(True, cv.boolean, "follow only links to the listing page's host")
    max_per_run: int = setting(
        REQUIRED,
        cv.positive_int,
        "detail pages fetched per run at most (required: the run's work stays bounded)",
    )
    refresh_after: float | None = setting(
        None,
        cv.positive_duration,
        "a detail page already stored is not fetched again until this long after its last "
        "successful fetch; a listing's links are trusted for as long",
        shown="every run",
    )


@dataclass(frozen=True, kw_only=True)
class SitemapConfig:
    """URLs taken from a sitemap, a sitemap index, or the sitemaps a robots.txt names."""

    url: str = setting(
        REQUIRED,
        _sitemap_url,
        "a sitemap or sitemap index (nested at most 3 deep, gzip or plain), or `robots`: the "
        "`Sitemap:` lines of `site`'s robots.txt",
    )
    site: str | None = setting(
        None, cv.http_url, "with `url: robots`: the site (`https://example.org`)"
    )
    include: tuple[re.Pattern[str], ...] = setting(
        (), cv.regex_list, "regexes: a page URL must match one (when given)"
    )
    exclude: tuple[re.Pattern[str], ...] = setting(
        (), cv.regex_list, "regexes: a page URL must match none"
    )
    max_urls: int = setting(
        REQUIRED,
        cv.positive_int,
        "page URLs taken per run at most (required: a sitemap may list 50,000)",
    )
    changed_only: bool = setting(
        False,
        cv.boolean,
        "fetch only URLs whose `<lastmod>` is newer than their last successful fetch (URLs "
        "without `<lastmod>` are fetched every run)",
    )
    max_bytes: int = setting(
        SITEMAP_MAX_BYTES,
        cv.size,
        "one sitemap document at most, unpacked (sitemaps.org's limit); the fetch layer's "
        "`max_response_bytes` caps what is downloaded",
        shown="`50MB`",
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if self.url == "robots" and not self.site:
            yield "site", "url: robots needs `site: https://…` (whose robots.txt to read)"
        if self.site is not None and self.url != "robots":
            yield "site", "only used with `url: robots`"


def source_problems(
    parser: str,
    paginate: PaginateConfig | None,
    follow: FollowConfig | None,
    sitemap: SitemapConfig | None,
) -> Iterable[tuple[str, str]]:
    """Rules between a source's parser and its discovery sections: (key, message)."""
    from crawler.config.selectors import check_selector

    if paginate is not None:
        if sitemap is not None:
            yield "paginate", "a sitemap source's pages come from the sitemap: nothing to paginate"
        elif parser == "feed":
            yield "paginate", "a feed is read whole: pagination is for html and json listings"
        elif paginate.next is not None and (error := check_selector(parser, paginate.next)):
            yield "paginate.next", error
        elif paginate.cursor is not None:
            if parser != "json":
                yield "paginate.cursor", "a cursor is read with JMESPath: needs `parser: json`"
            elif error := check_selector("json", paginate.cursor):
                yield "paginate.cursor", error
    if follow is not None:
        if sitemap is not None:
            yield "follow", "a sitemap source's pages give the records: follow needs listing pages"
        elif parser not in LINK_PARSERS:
            yield "follow", f"a {parser} source gives no links to follow"
        elif parser == "feed":
            if follow.links not in FEED_LINK_KEYS:
                yield "follow.links", f"a feed gives links in `link` or `id`, not {follow.links!r}"
        elif error := check_selector(parser, follow.links):
            yield "follow.links", error


def url_wanted(
    url: str, include: tuple[re.Pattern[str], ...], exclude: tuple[re.Pattern[str], ...]
) -> bool:
    """True when `url` matches one of `include` (or there is none) and none of `exclude`."""
    if include and not any(p.search(url) for p in include):
        return False
    return not any(p.search(url) for p in exclude)
