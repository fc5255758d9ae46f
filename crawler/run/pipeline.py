"""One source run: fetch every URL, extract records, hand batches to the sink, account for it.

A run is a `success` when at least one page was fetched and extracted (or every page answered
"not modified") and every batch reached the sink; it is a `failure` when no page could be used
or the sink refused a batch. Single failed pages are counted and logged, and they do not fail
the run: a flaky page must not page the user, the error-ratio alert covers it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Collection, Coroutine
from typing import TYPE_CHECKING, Any

from crawler.config.root import Config
from crawler.config.sources import SourceConfig
from crawler.errors import CrawlerError, ErrorKind, LoginFailed, SecretUnavailable
from crawler.fetch.client import Fetcher
from crawler.observability.metrics import Metrics
from crawler.record import Record, RunRow
from crawler.run.plan import SourcePlan
from crawler.run.result import RunResult
from crawler.run.walk import Walk
from crawler.storable import clean_text
from crawler.storage.sink import Sink

if TYPE_CHECKING:
    from crawler.render.browser import Browser

log = logging.getLogger("crawler.pipeline")


class _Batcher:
    """Collects a run's records and hands them to the sink in batches of `size`.

    A page's `on_commit` runs as soon as the batch holding its last record is committed, not
    when the queue next runs empty: with 16 workers feeding a slower database the queue may not
    run empty before the run ends, and every page waiting for it kept its callback (and what
    it holds) alive that long.
    """

    def __init__(self, sink: Sink, result: RunResult, size: int, metrics: Metrics) -> None:
        self.sink, self.result, self.size, self.metrics = sink, result, size, metrics
        self.source = result.source
        self.pending: list[Record] = []
        # (records added up to and with the page's own, its callback), in the order added:
        # batches leave from the front of `pending`, so a page is safe once `written` reaches
        # its count.
        self.on_commit: collections.deque[tuple[int, Callable[[], None]]] = collections.deque()
        self.added = 0
        self.written = 0
        self.lock = asyncio.Lock()

    async def add(self, records: list[Record], on_commit: Callable[[], None]) -> None:
        self.pending.extend(records)
        self.added += len(records)
        self.on_commit.append((self.added, on_commit))
        self.metrics.queue_records.inc(len(records))
        if len(self.pending) >= self.size:
            await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            while self.pending:
                batch, self.pending = self.pending[: self.size], self.pending[self.size :]
                try:
                    self.result.count(await self.sink.write(self.source, batch))
                finally:
                    self.metrics.queue_records.dec(len(batch))
                self.written += len(batch)
                while self.on_commit and self.on_commit[0][0] <= self.written:
                    self.on_commit.popleft()[1]()


class Pipeline:
    """Runs sources: fetch → extract → sink, with per-run accounting."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        fetcher: Fetcher,
        sink: Sink,
        browser: Browser | None = None,
    ) -> None:
        self.config, self.metrics, self.fetcher, self.sink = config, metrics, fetcher, sink
        self.browser = browser  # with `render` sources only
        self.plans: dict[str, SourcePlan] = {}
        self.stopping = False  # set on shutdown: runs take no new URLs
        for s in config.sources:
            self._plan(s)

    def _plan(self, source: SourceConfig) -> None:
        """Compile the source's plan and create its series at 0."""
        plan = self.plans[source.name] = SourcePlan(source)
        m = self.metrics
        if source.render is not None:
            m.init_render(source.name)
        m.init_source(source.name, source.hosts, self.sink.backend)
        if source.login is not None:
            m.init_login(source.name)
        m.init_discovery(source.name, *plan.series())
        m.init_fields(source.name, plan.detail.fields.names, bool(plan.detail.fields.required))

    def configure(self, config: Config, changed: Collection[str]) -> None:
        """Take a reloaded configuration: plans for the added and `changed` sources (a run
        under way keeps the plan it started with), none for the removed ones."""
        self.config = config
        names = {s.name for s in config.sources}
        for name in [n for n in self.plans if n not in names]:
            del self.plans[name]
        for s in config.sources:
            if s.name not in self.plans or s.name in changed:
                self._plan(s)

    async def run_source(self, source: SourceConfig) -> RunResult:
        m = self.metrics
        result = RunResult(source=source.name, started_at=time.time())
        started = time.monotonic()
        log.info("source run started", extra={"source": source.name, "urls": len(source.urls)})
        batcher = _Batcher(self.sink, result, self.config.storage.batch_size, m)
        plan = self.plans.get(source.name)
        if plan is None or plan.source is not source:  # a reload just replaced it
            plan = SourcePlan(source)
        walk = Walk(plan, self.fetcher, m, result, batcher.add)

        async def worker() -> None:
            # The frontier ends once nothing is queued and no worker can queue more.
            while not self.stopping and (task := await walk.frontier.get()) is not None:
                try:
                    await walk.visit(task)
                finally:
                    walk.frontier.done()

        try:
            # The run's request: header file, token and password read now, once per run.
            if self.fetcher.state is not None:  # its validators belong to this extraction
                self.fetcher.state.definitions[source.name] = plan.definition
            self.fetcher.begin_run(source)
            async with contextlib.AsyncExitStack() as stack:
                if source.render is not None and self.browser is not None:
                    # Imported here: a source without `render` never loads the browser client.
                    from crawler.render.renderer import rendering

                    walk.renderer = await stack.enter_async_context(
                        rendering(self.browser, self.fetcher, m, source)
                    )
                # A source with a `login`: its stored session, or a login before the first page.
                await self.fetcher.log_in(source)
                await walk.seed()
                await _all_or_none([worker() for _ in range(self.config.fetch.concurrency)])
            await batcher.flush()
            walk.finish()
        except Exception as exc:
            # CrawlerError: the sink refused a batch (spool full, store broken). Anything else
            # is a bug or a value no layer expected: it ends this run, never the scheduler's job
            # (an exception escaping into APScheduler leaves no run row and repeats every run).
            kind = (
                ErrorKind.SECRET
                if isinstance(exc, SecretUnavailable)
                else ErrorKind.LOGIN
                if isinstance(exc, LoginFailed)
                else ErrorKind.STORAGE
                if isinstance(exc, CrawlerError)
                else ErrorKind.INTERNAL
            )
            _fail(result, kind, exc)
            m.queue_records.dec(len(batcher.pending))
            if kind is ErrorKind.INTERNAL:
                log.error(
                    "source run raised",
                    exc_info=True,
                    extra={"source": source.name, "error_kind": kind.value},
                )
        self.fetcher.sessions.end(source)  # the session kept for the next run, the jar dropped
        if result.status == "success" and result.pages == 0 and result.not_modified == 0:
            result.status = "failure"
            result.error = f"no page could be used ({result.failed_pages} failed)"
            if result.errors:
                result.error_kind = max(result.errors, key=result.errors.__getitem__)
        result.finished_at = time.time()
        duration = time.monotonic() - started
        m.source_runs.labels(source.name, result.status).inc()
        m.source_run_duration.labels(source.name).observe(duration)
        m.last_run.labels(source.name).set(result.finished_at)
        if result.ok:
            m.last_success.labels(source.name).set(result.finished_at)
        await self._account(result)
        level = logging.INFO if result.ok else logging.ERROR
        log.log(
            level,
            "source run finished",
            extra={
                "source": source.name,
                "status": result.status,
                "pages": result.pages,
                "not_modified": result.not_modified,
                "failed_pages": result.failed_pages,
                "records": result.records,
                "records_new": result.records_new,
                "records_changed": result.records_changed,
                "records_spooled": result.records_spooled,
                "duration_ms": round(duration * 1000),
                "error_kind": result.error_kind,
                "error": result.error,
            },
        )
        return result

    async def _account(self, result: RunResult) -> None:
        row = RunRow(
            run_id=str(uuid.uuid4()),
            source=result.source,
            instance=self.config.instance,
            status=result.status,
            started_at=result.started_at,
            finished_at=result.finished_at,
            pages=result.pages,
            records=result.records,
            records_new=result.records_new,
            records_changed=result.records_changed,
            # An error message may quote a hostile value: keep the run row storable too.
            error=clean_text(result.error) if result.error else None,
        )
        try:
            await self.sink.write_run(row)
        except Exception as exc:  # the run's outcome is already counted and logged
            log.error(
                "could not record the run in crawler_jobs",
                extra={
                    "source": result.source,
                    "error_kind": ErrorKind.STORAGE.value,
                    "error": str(exc),
                },
            )


def _fail(result: RunResult, kind: ErrorKind, exc: BaseException) -> None:
    result.status, result.error_kind = "failure", kind.value
    text = str(exc) if isinstance(exc, CrawlerError) else f"{type(exc).__name__}: {exc}"
    result.error = f"{kind.value}: {text}" if kind is ErrorKind.INTERNAL else text


async def _all_or_none(coros: list[Coroutine[Any, Any, None]]) -> None:
    """Run the workers; when one fails, cancel the others before raising, so no worker of a
    failed run goes on fetching behind the next run's back."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        exc = task.exception()
        if exc is not None:
            raise exc
