"""A source's declaration (`SourceConfig`): what to fetch, when, and how to turn it into
records, with the checks across its keys. Its sections are declared beside it: `request`
(crawler/config/request.py), `paginate`/`follow`/`sitemap` (crawler/config/discovery.py) and
`fields` (crawler/config/fields.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlsplit

from crawler.config import convert as cv
from crawler.config.discovery import (
    FollowConfig,
    PaginateConfig,
    SitemapConfig,
    source_problems,
)
from crawler.config.fields import FieldSpec, field_problems
from crawler.config.loader import (
    REQUIRED,
    derived,
    entries,
    section,
    setting,
)
from crawler.config.login import LoginConfig
from crawler.config.render import RenderConfig
from crawler.config.request import RequestConfig
from crawler.config.selectors import check_selector

# The keys of a feed entry's record (crawler/sources/feed.py makes them).
ENTRY_KEYS = ("id", "link", "title", "published", "updated", "summary", "author", "tags")


@dataclass(frozen=True, kw_only=True)
class SourceConfig:
    """One configured source: what to fetch, when, and how to turn it into records."""

    name: str = setting(
        REQUIRED,
        cv.source_name,
        "letters, digits, `_ . -`; a metric label and the `source` column",
        missing="every source needs a name",
    )
    every: float | None = setting(
        None, cv.positive_duration, "run interval (`15m`); `every` or `cron` is required"
    )
    cron: str | None = setting(
        None, cv.cron, "a 5-field crontab in the machine's time zone, instead of `every`"
    )
    jitter: float = setting(0.0, cv.duration, "random delay added to each `every` run")
    urls: tuple[str, ...] = setting(
        (),
        cv.url_templates,
        "`http(s)` URLs; `{1..10}`, `{01..10}`, `{0..100..10}` expand (several ranges: every "
        "combination)",
        shown="required (or `sitemap`)",
    )
    url: str | None = setting(None, cv.http_url, "one URL: the same as `urls: [URL]`")
    parser: str = setting(
        "html",
        cv.choice("html", "json", "feed"),
        "`html` (CSS, or XPath with an `xpath:` prefix), `json` (JMESPath) or `feed` (RSS 2.0, "
        "RSS 1.0, Atom: each entry a record)",
    )
    items: str | None = setting(
        None, cv.string, "selector of the repeated element; none → the whole page is one record"
    )
    html_engine: str = setting(
        "auto",
        cv.choice("auto", "lxml"),
        "`auto`: html pages are parsed and matched by Lexbor (selectolax, ~5x faster) when every "
        "selector of the source is one it matches exactly as lxml does, else by lxml; `lxml`: "
        "always libxml2 (see *HTML engines* below)",
    )
    fields: tuple[FieldSpec, ...] = entries(
        FieldSpec,
        "`name: selector`, or `name: {selector: …, type: …, …}`: the field pipeline below; "
        "with `follow`, of the detail pages; with `parser: feed`, optional (entry keys by name)",
        by_name="name",
        shorthand="selector",
    )
    key: tuple[str, ...] = setting(
        (),
        cv.string_list,
        "field name(s) whose values identify a record (one short scalar is kept readable)",
        shown="hash of the record",
    )
    robots: bool = setting(True, cv.boolean, "`false` skips robots.txt for this source")
    allow_private: bool = setting(
        False,
        cv.boolean,
        "`true` lets this source reach loopback, private, link-local and other non-public "
        "addresses (a LAN host by name); otherwise only the IP literals and `localhost` "
        "written in its own URLs may be non-public, and any other such destination (a "
        "redirect, a name resolving there) fails as `blocked_address` (docs/security.md)",
    )
    allow_https_to_http: bool = setting(
        False,
        cv.boolean,
        "`true` follows redirects from `https` to plain `http`; otherwise such a redirect "
        "fails as `redirect`",
    )
    request: RequestConfig | None = section(
        RequestConfig,
        "how the URLs are requested: method, body, headers, auth, proxy (below)",
        optional=True,
    )
    cookies: bool = setting(
        True,
        cv.boolean,
        "keep the cookies pages set, within the run (RFC 6265; public-suffix domains refused); "
        "`false`: none kept or sent",
    )
    login: LoginConfig | None = section(
        LoginConfig,
        "log in before the first page; the session is kept across runs (below)",
        optional=True,
    )
    user_agent: str | None = setting(
        None,
        cv.string,
        "this source's `User-Agent` (and the name matched in robots.txt)",
        shown="the top-level `user_agent`",
    )
    timezone: str = setting(
        "UTC",
        cv.timezone,
        "IANA zone (`Europe/Paris`) of naive times in the source's pages, for `type: datetime`",
    )
    history: bool = setting(
        False,
        cv.boolean,
        "keep every changed version of a record in `scraped_data_history` (source, key, data, "
        "seen_at), written in the upsert's transaction; unchanged re-crawls add nothing",
    )
    enabled: bool = setting(
        True, cv.boolean, "`false` keeps the source configured but never scheduled"
    )
    paginate: PaginateConfig | None = section(
        PaginateConfig,
        "how a listing page leads to the next: exactly one of `next`, `cursor`, `link_header`, "
        "`page_param` (below)",
        optional=True,
    )
    follow: FollowConfig | None = section(
        FollowConfig,
        "links on the listing pages fetched as detail pages, which give the records (below)",
        optional=True,
    )
    sitemap: SitemapConfig | None = section(
        SitemapConfig, "the source's URLs from a sitemap instead of `urls` (below)", optional=True
    )
    render: RenderConfig | None = section(
        RenderConfig,
        "its html pages rendered by the `browser` (pages that need JavaScript; below)",
        optional=True,
    )
    line: int | None = derived()

    def __post_init__(self) -> None:
        if self.url is not None and not self.urls:  # `url:` is shorthand for a list of one
            object.__setattr__(self, "urls", (self.url,))

    def check(self) -> Iterable[tuple[str, str]]:
        if self.every is None and self.cron is None:
            yield "every", "a source needs `every` or `cron`"
        elif self.every is not None and self.cron is not None:
            yield "cron", "use `every` or `cron`, not both"
        if not self.urls and self.sitemap is None:
            yield "urls", "a source needs at least one URL (or a `sitemap`)"
        elif self.urls and self.sitemap is not None:
            yield "urls", "a sitemap source takes its URLs from the sitemap: remove `urls`"
        if not self.fields and self.parser != "feed":
            yield "fields", "needs at least one entry"
        yield from source_problems(self.parser, self.paginate, self.follow, self.sitemap)
        # With `follow`, items and fields are read on the detail pages, with their parser.
        parser = self.follow.parser if self.follow is not None else self.parser
        if self.items is not None and (error := check_selector(parser, self.items)):
            yield "items", error
        for f in self.fields:
            for key, error in field_problems(f, parser):
                # `name: SELECTOR` is the common form: its problem is the field's own.
                yield (f"fields.{f.name}" if key == "selector" else f"fields.{f.name}.{key}"), error
        names = {f.name for f in self.fields}
        if not names and self.parser == "feed" and self.follow is None:
            names = set(ENTRY_KEYS)  # a feed's entries as they are
        for k in self.key:
            if k not in names:
                yield "key", f"{k!r} is not one of the fields"
        if self.login is not None and not self.login.is_json and not self.cookies:
            yield "cookies", "a form login keeps its session in cookies: remove `cookies: false`"
        if self.render is not None and self.parser != "html":
            yield "render", f"renders html pages: not for `parser: {self.parser}`"

    @cached_property
    def hosts(self) -> frozenset[str]:
        # Asked on every request (the per-host key): worked out once, not per request from every
        # listed URL (a 1,000-URL source tripled the crawl's CPU that way).
        return frozenset(urlsplit(u).netloc for u in self.urls)
