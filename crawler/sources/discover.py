"""Discovery inside one run: pagination chains and links to follow (the run's frontier that
holds what they find is crawler/run/frontier.py).

A run starts from its seeds (start URLs, a sitemap, a feed) and finds more URLs as it goes:
the next page of a listing (`paginate`) and the detail pages a listing links to (`follow`).
Everything here is per run and bounded by the configuration: a chain stops at `max_pages`, a
run follows at most `max_per_run` links, and the frontier and the seen-set are dropped when
the run ends. Nothing here fetches: the pipeline fetches every URL through the one fetch layer.

Pagination stops at the bound, when there is no next page, when a page gives no items, when
a URL repeats within the run, or when a page's body equals the previous page's (a site that
answers every page number with the last page).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from crawler.config.discovery import (
    BOUND,
    EXCLUDED,
    OFF_HOST,
    SEEN,
    FollowConfig,
    PaginateConfig,
    url_wanted,
)

LinkFinder = Callable[[Any], list[str]]


def compile_links(parser: str, selector: str) -> LinkFinder:
    """A function from a parsed document to the (raw) link strings `selector` gives.

    html: a CSS/XPath selector on the lxml tree (an element gives its text); json: a JMESPath
    expression giving a string or a list of strings; feed: an entry key, read on every entry.
    """
    if parser == "feed":

        def from_entries(entries: Any) -> list[str]:
            return [str(e[selector]) for e in entries if e.get(selector)]

        return from_entries
    if parser == "json":
        import jmespath

        expr = jmespath.compile(selector)

        def from_json(doc: Any) -> list[str]:
            found = expr.search(doc)
            if found is None:
                return []
            values = found if isinstance(found, list) else [found]
            return [str(v) for v in values if isinstance(v, (str, int)) and str(v)]

        return from_json
    from lxml import etree

    from crawler.config.selectors import xpath_of

    xp = etree.XPath(xpath_of(selector), smart_strings=False)

    def from_html(doc: Any) -> list[str]:
        found = xp(doc)
        values = found if isinstance(found, list) else [found]
        out = []
        for v in values:
            text = v if isinstance(v, str) else "".join(v.itertext())
            text = text.strip()
            if text:
                out.append(text)
        return out

    return from_html


def absolute(base: str, link: str) -> str | None:
    """`link` joined with the page's URL, without its fragment; None unless http(s)."""
    try:
        joined = urljoin(base, link.strip())
        parts = urlsplit(joined)
    except ValueError:  # a hostile href ("http://[::1") must not cost the page
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return urlunsplit(parts._replace(fragment=""))


def with_query(url: str, name: str, value: str) -> str:
    """`url` with query parameter `name` set to `value` (added, or replaced in place)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == name for k, _ in query):
        query = [(k, value if k == name else v) for k, v in query]
    else:
        query.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(query)))


def query_value(url: str, name: str) -> str | None:
    for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if k == name:
            return v
    return None


class Paginator:
    """Computes a listing page's next URL for one `paginate` configuration."""

    def __init__(self, cfg: PaginateConfig, parser: str) -> None:
        self.cfg = cfg
        self.kind = cfg.kind
        self._next: LinkFinder | None = None
        self._cursor: Any = None
        if cfg.next is not None:
            self._next = compile_links(parser, cfg.next)
        elif cfg.cursor is not None:
            import jmespath

            self._cursor = jmespath.compile(cfg.cursor)

    def next_url(self, url: str, doc: Any, links: dict[str, str] | None = None) -> str | None:
        """The page after `url`, whose parsed body is `doc` and Link header rels `links`."""
        cfg = self.cfg
        if self._next is not None:
            found = self._next(doc)
            return absolute(url, found[0]) if found else None
        if self._cursor is not None:
            assert cfg.param is not None  # checked with the configuration
            value = self._cursor.search(doc)
            if value is None or value == "" or isinstance(value, (bool, dict, list)):
                return None
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            return with_query(url, cfg.param, str(value))
        if cfg.link_header is not None:
            target = (links or {}).get(cfg.link_header)
            return absolute(url, target) if target else None
        if cfg.page_param is not None:
            current = query_value(url, cfg.page_param)
            try:
                number = int(current) if current is not None else cfg.start
            except ValueError:
                return None
            return with_query(url, cfg.page_param, str(number + 1))
        return None


@dataclass
class Chain:
    """One start URL's pagination within a run."""

    pages: int = 0
    last_hash: bytes | None = None

    def step(
        self,
        cfg: PaginateConfig,
        next_url: str | None,
        body_hash: bytes | None,
        items: int | None,
        seen: set[str],
    ) -> tuple[str | None, str | None]:
        """After one more page of the chain: (the URL to fetch next or None, the reason to
        stop: `end`, `empty`, `loop`, `same_body` or `max_pages`)."""
        self.pages += 1
        repeated = body_hash is not None and body_hash == self.last_hash
        if body_hash is not None:
            self.last_hash = body_hash
        if next_url is None:
            return None, "end"
        if items == 0:
            return None, "empty"
        if repeated:
            return None, "same_body"
        if next_url in seen:
            return None, "loop"
        if self.pages >= cfg.max_pages:
            return None, "max_pages"
        return next_url, None


class LinkFilter:
    """Decides, link by link, whether a run follows it; the run's seen-set lives here.

    Two steps, because freshness (`refresh_after`, `changed_only`) needs a look at the state
    store in between: `check()` for what the URL alone decides, `take()` for the run's bound.
    A fresh page does not use up the bound, so a large catalogue is still walked to its end.
    """

    def __init__(
        self,
        include: tuple[re.Pattern[str], ...],
        exclude: tuple[re.Pattern[str], ...],
        same_host: bool,
        limit: int,
        seen: set[str],
    ) -> None:
        self.include, self.exclude, self.same_host = include, exclude, same_host
        self.limit, self.seen = limit, seen
        self.taken = 0

    @classmethod
    def for_follow(cls, cfg: FollowConfig, seen: set[str]) -> LinkFilter:
        return cls(cfg.include, cfg.exclude, cfg.same_host, cfg.max_per_run, seen)

    def check(self, url: str, listing_host: str) -> str | None:
        """Why `url` is not followed (`excluded`, `off_host`, `seen`), or None: then it is
        seen from now on (before any await, so two workers never both claim one URL)."""
        if not url_wanted(url, self.include, self.exclude):
            return EXCLUDED
        if self.same_host and urlsplit(url).netloc != listing_host:
            return OFF_HOST
        if url in self.seen:
            return SEEN
        self.seen.add(url)
        return None

    def take(self) -> bool:
        """Count one more link as followed, or False when the run's bound is reached."""
        if self.taken >= self.limit:
            return False
        self.taken += 1
        return True

    def skip_reason(self, url: str, listing_host: str) -> str | None:
        """`check()` then `take()`: why `url` is not followed, or None when it is."""
        reason = self.check(url, listing_host)
        if reason is None and not self.take():
            return BOUND
        return reason
