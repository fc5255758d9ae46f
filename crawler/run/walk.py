"""One source run's walk: from its seeds through listings, sitemaps and feeds to the pages
that give records, every URL fetched through the one fetch layer.

Seeds are the source's URLs (listing pages, or feeds with `parser: feed`) or its sitemap. A
listing page gives records, or with `follow` the links to the detail pages that give them,
and with `paginate` its next page. A sitemap gives page URLs (or more sitemaps); a feed gives
records, or with `follow` the articles behind its entries.

What is committed, when (so "not modified" never hides unstored records):
- a page with records: its validators and fetch stamp once its records are committed;
- a listing with `follow`: once every detail page it led to ended well (`discover.Group`),
  with its next page, so an unchanged listing still leads on without being parsed again;
- a sitemap document: never (it is read in full on every run; its pages' stamps decide).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from crawler.config.discovery import BOUND, DETAIL, EXCLUDED, FEED, FRESH, LISTING, SITEMAP
from crawler.errors import FetchError
from crawler.fetch.client import Fetcher
from crawler.fetch.httpstate import STAMP_EVERY, Revalidation
from crawler.fetch.transport import Page
from crawler.observability.metrics import Metrics
from crawler.record import Record
from crawler.run.frontier import Frontier, Group, Task
from crawler.run.plan import SourcePlan
from crawler.run.result import RunResult
from crawler.sources.discover import (
    Chain,
    LinkFilter,
    absolute,
)
from crawler.sources.sitemap import INDEX, MAX_DEPTH, parse_sitemap

if TYPE_CHECKING:
    from crawler.render.renderer import Renderer

# The run's per-page log lines keep the logger they always had (log queries select on it).
log = logging.getLogger("crawler.pipeline")

AddRecords = Callable[[list[Record], Callable[[], None]], Awaitable[None]]
# Sitemap documents fetched per run at most (indexes of indexes of huge sites).
MAX_SITEMAP_DOCS = 100


class Walk:
    """One run of one source; `frontier` feeds the run's workers, `visit()` does one task."""

    def __init__(
        self,
        plan: SourcePlan,
        fetcher: Fetcher,
        metrics: Metrics,
        result: RunResult,
        add_records: AddRecords,
    ) -> None:
        self.plan, self.fetcher, self.metrics, self.result = plan, fetcher, metrics, result
        self.add_records = add_records
        self.source = plan.source
        self.renderer: Renderer | None = None  # a `render` source's html pages: rendered
        self.frontier = Frontier()
        self.seen: set[str] = set()  # every URL queued this run: dropped with the walk
        self.bounds: set[str] = set()
        self.sitemap_docs = 0
        follow, sitemap = self.source.follow, self.source.sitemap
        self.follow = LinkFilter.for_follow(follow, self.seen) if follow is not None else None
        self.sitemap_urls = (
            LinkFilter(sitemap.include, sitemap.exclude, False, sitemap.max_urls, self.seen)
            if sitemap is not None
            else None
        )

    # -- seeds --------------------------------------------------------------------------------

    async def seed(self) -> None:
        """Queue the run's first URLs."""
        s = self.source
        if s.sitemap is not None:
            urls = [s.sitemap.url]
            if s.sitemap.url == "robots":
                assert s.sitemap.site is not None  # checked with the configuration
                site = urlsplit(s.sitemap.site)
                policy = await self.fetcher.robots_policy(s, f"{site.scheme}://{site.netloc}")
                urls = policy.sitemaps()
                if not urls:
                    log.warning(
                        "robots.txt names no sitemap",
                        extra={"source": s.name, "url": s.sitemap.site, "reason": policy.reason},
                    )
            for url in urls[:MAX_SITEMAP_DOCS]:
                self.sitemap_docs += 1
                self._queue(Task(url, SITEMAP, depth=1))
            return
        role = FEED if s.parser == "feed" else LISTING
        for url in s.urls:
            if url in self.seen:  # each URL once per run
                continue
            chain = Chain() if s.paginate is not None else None
            self._queue(Task(url, role, chain=chain))

    def _queue(self, task: Task) -> None:
        self.seen.add(task.url)
        self.frontier.push(task)

    def finish(self) -> None:
        """Count the bounds the run stopped at (once per run each)."""
        for bound in sorted(self.bounds):
            self.metrics.bound_hits.labels(self.source.name, bound).inc()
            log.info(
                "source run stopped at a bound: data may be missed",
                extra={"source": self.source.name, "bound": bound},
            )

    # -- one task -----------------------------------------------------------------------------

    async def visit(self, task: Task) -> None:
        m, name = self.metrics, self.source.name
        try:
            conditional = True
            if self.follow is not None and task.role in (LISTING, FEED):
                conditional = await self._links_still_fresh(task.url)
            source = self.plan.as_role[task.role]
            via = self.renderer if self.renderer and source.parser == "html" else self.fetcher
            page = await via.fetch(source, task.url, conditional=conditional)
            m.source_pages.labels(name, task.role).inc()
            if page.not_modified:
                self._not_modified(task, page)
                return
            if task.role == SITEMAP:
                await self._sitemap(task, page)
                return
            extractor = self.plan.detail if task.role == DETAIL else self.plan.listing
            doc = extractor.parse(page.body, page.charset)
            if self.follow is not None and task.role != DETAIL:
                await self._listing_links(task, page, doc)
                return
            records = extractor.records(doc, task.url, self.result.fields)
            self.result.fields.flush(m, name)
        except FetchError as exc:
            self._failed(task, exc)
            return
        next_url = self._next_page(task, page, doc, len(records))
        self._extracted(task, page, len(records))
        stamp_every = self.plan.detail_stamp_every if task.role == DETAIL else STAMP_EVERY
        # The callback waits for the page's batch: it holds the validators, never the body.
        commit = functools.partial(
            self._commit, task, page.validators, next_url=next_url, stamp_every=stamp_every
        )
        # Nor does this worker while it waits for a batch to be written: a parsed page is
        # ~90 KB of lxml tree (for a 6.5 KB page) or ~1 MiB of Lexbor's pools, times every
        # worker waiting (issue 13).
        del doc, page
        if records:
            await self.add_records(records, commit)
        else:
            commit()

    def _commit(
        self,
        task: Task,
        validators: Revalidation | None,
        *,
        next_url: str | None = None,
        stamp_every: float,
    ) -> None:
        self.fetcher.commit(
            self.plan.as_role[task.role],
            task.url,
            validators,
            next_url=next_url,
            stamp_every=stamp_every,
        )
        if task.group is not None:
            task.group.child_done(True)

    async def _links_still_fresh(self, url: str) -> bool:
        """Whether a listing's links, read at its last commit, may be trusted this run: only
        within `refresh_after` of that (else, and without `refresh_after`, the links are read
        again so every detail page's own `refresh_after` and validators decide about it)."""
        follow = self.source.follow
        if follow is None or follow.refresh_after is None:
            return False
        return await self._fresh(url, follow.refresh_after)

    def _not_modified(self, task: Task, page: Page) -> None:
        self.result.not_modified += 1
        self.metrics.not_modified.labels(self.source.name).inc()
        # Its links are not read again; pagination goes on to the page it led to last time.
        old = page.validators.old if page.validators is not None else None
        next_url = old.next_url if old is not None else None
        if task.chain is not None and self.source.paginate is not None:
            new = page.validators.new if page.validators is not None else None
            self._step_chain(task, next_url, new.body_hash if new else None, None)
        if self.follow is not None and task.role != DETAIL:
            # A listing read from its stored state: recorded as it was, stamp included, so
            # its links are read again once `refresh_after` has passed since they last were.
            return
        stamp_every = self.plan.detail_stamp_every if task.role == DETAIL else STAMP_EVERY
        self._commit(task, page.validators, next_url=next_url, stamp_every=stamp_every)

    def _failed(self, task: Task, exc: FetchError) -> None:
        r, kind = self.result, exc.kind.value
        r.failed_pages += 1
        r.errors[kind] = r.errors.get(kind, 0) + 1
        self.metrics.fetch_errors.labels(self.source.name, kind).inc()
        self.metrics.failed_pages.labels(self.source.name).inc()
        if task.group is not None:
            task.group.child_done(False)
        log.warning(
            "fetch failed",
            extra={
                "source": self.source.name,
                "url": task.url,
                "role": task.role,
                "error_kind": kind,
                "status": exc.status,
                "error": str(exc),
            },
        )

    def _extracted(self, task: Task, page: Page, records: int) -> None:
        m, name = self.metrics, self.source.name
        self.result.pages += 1
        self.result.records += records
        m.pages.labels(name).inc()
        m.records_extracted.labels(name).inc(records)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "page extracted",
                extra={
                    "source": name,
                    "url": task.url,
                    "role": task.role,
                    "status": page.status,
                    "duration_ms": round(page.duration * 1000),
                    "records": records,
                },
            )

    # -- pagination -----------------------------------------------------------------------------

    def _next_page(self, task: Task, page: Page, doc: Any, items: int) -> str | None:
        """The listing's next page (queued unless the chain stops); None for other pages."""
        if task.chain is None or self.plan.paginator is None:
            return None
        next_url = self.plan.paginator.next_url(task.url, doc, page.links)
        digest = hashlib.blake2b(page.body, digest_size=16).digest()
        self._step_chain(task, next_url, digest, items)
        return next_url

    def _step_chain(
        self, task: Task, next_url: str | None, digest: bytes | None, items: int | None
    ) -> None:
        assert task.chain is not None and self.source.paginate is not None
        follow, why = task.chain.step(self.source.paginate, next_url, digest, items, self.seen)
        if follow is not None:
            self._queue(Task(follow, task.role, chain=task.chain))
        elif why == "max_pages":
            self.bounds.add("max_pages")
        if why is not None and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "pagination ended",
                extra={"source": self.source.name, "url": task.url, "reason": why},
            )

    # -- links ----------------------------------------------------------------------------------

    async def _listing_links(self, task: Task, page: Page, doc: Any) -> None:
        """Queue the detail pages a listing (or feed) links to; paginate on."""
        assert self.plan.links is not None and self.follow is not None
        m, name = self.metrics, self.source.name
        raw = self.plan.links(doc)
        next_url = None
        if task.chain is not None and self.plan.paginator is not None:
            next_url = self.plan.paginator.next_url(task.url, doc, page.links)
        group = Group(
            functools.partial(
                self.fetcher.commit,
                self.source,
                task.url,
                page.validators,
                next_url=next_url,
                stamp_every=self.plan.detail_stamp_every,
            )
        )
        m.links_found.labels(name).inc(len(raw))
        host = urlsplit(task.url).netloc
        complete = True
        refresh_after = self.source.follow.refresh_after if self.source.follow else None
        for link in raw:
            url = absolute(task.url, link)
            reason = EXCLUDED if url is None else self.follow.check(url, host)
            if reason is None and url is not None:
                if refresh_after is not None and await self._fresh(url, refresh_after):
                    reason = FRESH
                elif not self.follow.take():
                    reason = BOUND
                    complete = False
                    self.bounds.add("max_per_run")
                else:
                    m.links_followed.labels(name).inc()
                    group.add()
                    self.frontier.push(Task(url, DETAIL, group=group))
                    continue
            m.links_skipped.labels(name, reason).inc()
        self._extracted(task, page, 0)
        if task.chain is not None:
            digest = hashlib.blake2b(page.body, digest_size=16).digest()
            self._step_chain(task, next_url, digest, len(raw))
        group.seal(complete)

    async def _fresh(self, url: str, max_age: float, lastmod: float | None = None) -> bool:
        """True when `url`'s last committed fetch is newer than `max_age` seconds (follow), or
        than its sitemap `lastmod` (changed_only, max_age < 0)."""
        old = await self.fetcher.known(self.source, url)
        if old is None or old.fetched_at is None:
            return False
        if max_age < 0:
            return lastmod is not None and lastmod <= old.fetched_at
        return time.time() - old.fetched_at < max_age

    # -- sitemaps -------------------------------------------------------------------------------

    async def _sitemap(self, task: Task, page: Page) -> None:
        """Queue a sitemap's pages (include/exclude, changed_only, max_urls) or, for an index,
        its sitemaps (at most `MAX_DEPTH` deep)."""
        cfg, urls = self.source.sitemap, self.sitemap_urls
        assert cfg is not None and urls is not None
        m, name = self.metrics, self.source.name
        parsed = parse_sitemap(page.body, limit=cfg.max_urls, max_bytes=cfg.max_bytes)
        self._extracted(task, page, 0)
        if parsed.kind == INDEX:
            for entry in parsed.entries:
                loc = absolute(task.url, entry.loc)
                if loc is None or loc in self.seen:
                    continue
                if task.depth >= MAX_DEPTH or self.sitemap_docs >= MAX_SITEMAP_DOCS:
                    log.warning(
                        "sitemap index not followed further",
                        extra={"source": name, "url": task.url, "depth": task.depth},
                    )
                    break
                self.sitemap_docs += 1
                self._queue(Task(loc, SITEMAP, depth=task.depth + 1))
            return
        m.links_found.labels(name).inc(len(parsed.entries))
        for entry in parsed.entries:
            url = absolute(task.url, entry.loc)
            reason = EXCLUDED if url is None else urls.check(url, "")
            if reason is None and url is not None:
                if cfg.changed_only and await self._fresh(url, -1.0, entry.lastmod):
                    reason = FRESH
                elif not urls.take():
                    reason = BOUND
                    self.bounds.add("max_urls")
                else:
                    m.links_followed.labels(name).inc()
                    self.frontier.push(Task(url, DETAIL, lastmod=entry.lastmod))
                    continue
            m.links_skipped.labels(name, reason).inc()
        if parsed.truncated:
            self.bounds.add("max_urls")
