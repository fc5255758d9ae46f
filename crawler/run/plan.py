"""What a source's run needs, compiled once per source (`SourcePlan`): its extractors, paginator
and link finder, and the source as the fetch layer sees it for each page role."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

from crawler.config.diff import extraction_fingerprint
from crawler.config.discovery import DETAIL, FEED, LISTING, SITEMAP
from crawler.config.sources import SourceConfig
from crawler.fetch.httpstate import STAMP_EVERY
from crawler.record import Record
from crawler.sources.discover import (
    LinkFinder,
    Paginator,
    compile_links,
)
from crawler.sources.extract import Extractor

# The run's per-page log lines keep the logger they always had (log queries select on it).
log = logging.getLogger("crawler.pipeline")

AddRecords = Callable[[list[Record], Callable[[], None]], Awaitable[None]]
# Sitemap documents fetched per run at most (indexes of indexes of huge sites).
MAX_SITEMAP_DOCS = 100


class SourcePlan:
    """What a source's run needs, compiled once: extractors, paginator, link finder, and the
    source as the fetch layer sees it for each role (its parser decides the content type)."""

    def __init__(self, source: SourceConfig) -> None:
        self.source = source
        # Conditional-GET validators belong to this extraction definition (crawler.config.diff).
        self.definition = extraction_fingerprint(source)
        # Conditional-GET validators belong to this extraction definition (crawler.config.diff).
        self.definition = extraction_fingerprint(source)
        # Conditional-GET validators belong to this extraction definition (crawler.config.diff).
        self.definition = extraction_fingerprint(source)
        follow = source.follow
        if follow is None:
            self.listing = self.detail = Extractor(source)
        else:  # the listing only gives links: `items`, `fields` and `key` are the details'
            self.listing = Extractor(dataclasses.replace(source, items=None, fields=()))
            self.detail = Extractor(source, follow.parser)
        self.paginator = (
            Paginator(source.paginate, source.parser) if source.paginate is not None else None
        )
        self.links: LinkFinder | None = (
            compile_links(source.parser, follow.links) if follow is not None else None
        )
        self.as_role = {
            LISTING: source,
            FEED: source,
            DETAIL: dataclasses.replace(source, parser=self.detail.parser),
            SITEMAP: dataclasses.replace(source, parser="sitemap"),
        }
        # Pages whose stamp decides whether they are fetched: stamped on every commit.
        exact = (follow is not None and follow.refresh_after is not None) or (
            source.sitemap is not None and source.sitemap.changed_only
        )
        self.detail_stamp_every = 0.0 if exact else STAMP_EVERY

    def series(self) -> tuple[list[str], list[str], bool]:
        """The page roles and bounds this source can count, and whether it counts links."""
        s = self.source
        roles = (
            [SITEMAP, DETAIL]
            if s.sitemap is not None
            else [FEED if s.parser == "feed" else LISTING]
        )
        bounds = []
        if s.paginate is not None:
            bounds.append("max_pages")
        if s.follow is not None:
            roles.append(DETAIL)
            bounds.append("max_per_run")
        if s.sitemap is not None:
            bounds.append("max_urls")
        return roles, bounds, s.follow is not None or s.sitemap is not None
