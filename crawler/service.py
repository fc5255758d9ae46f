"""The service's lifecycle: start the parts in order, run, and stop them in reverse, bounded.

Start, stop and crash are distinct log events. On SIGTERM/SIGINT: the scheduler stops starting
runs, runs under way stop taking new URLs and finish their in-flight fetches within
`shutdown_grace`, pending batches are flushed to PostgreSQL or the spool, and the process
exits 0. Everything is held in one AsyncExitStack, so a crash half-way through start-up still
closes what was opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from crawler.config import Config, SourceConfig
from crawler.errors import CrawlerError
from crawler.fetch import Fetcher
from crawler.lease import Leases
from crawler.metrics import Metrics
from crawler.pipeline import Pipeline, RunResult
from crawler.schedule import Scheduler
from crawler.sink import Sink
from crawler.store import PostgresStore, make_store
from crawler.systemd import notify, watchdog_interval, watchdog_loop

log = logging.getLogger("crawler.service")

SHUTDOWN_GRACE = 20.0  # seconds for runs under way to finish after SIGTERM (systemd gives 90)


class Service:
    """Owns the fetcher, sink, pipeline, scheduler and HTTP server of one process."""

    def __init__(self, config: Config, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.metrics = Metrics(registry)
        self.metrics.instance_info.labels(config.instance).set(1)
        self.scheduler: Scheduler | None = None
        self.sink: Sink | None = None
        self.pipeline: Pipeline | None = None
        self._runs: set[asyncio.Task[RunResult | None]] = set()
        self.leases: Leases | None = None
        self._database: PostgresStore | None = None

    # -- parts -------------------------------------------------------------------------------

    async def _open(self, stack: contextlib.AsyncExitStack) -> Pipeline:
        fetcher = await stack.enter_async_context(Fetcher(self.config, self.metrics))
        # The PostgreSQL store, when configured, is also where crawlers share sources (leases).
        storage = self.config.storage
        self._database = PostgresStore(storage) if storage.dsn else None
        self.sink = Sink(self.config, self.metrics, self._database or make_store(storage))
        await self.sink.open()
        stack.push_async_callback(self.sink.close)
        self.pipeline = Pipeline(self.config, self.metrics, fetcher, self.sink)
        return self.pipeline

    def readiness(self) -> tuple[bool, dict[str, object]]:
        checks: dict[str, object] = {}
        scheduler_ok = self.scheduler is not None and self.scheduler.running
        checks["scheduler"] = "running" if scheduler_ok else "stopped"
        sink_ok, why = self.sink.writable if self.sink is not None else (False, "not open")
        checks["store"] = why
        if self.sink is not None and self.sink.spool is not None:
            checks["database_up"] = self.sink.db_up
            checks["spool"] = self.sink.spool.stats()
        return scheduler_ok and sink_ok, checks

    async def _run_tracked(self, source: SourceConfig) -> RunResult | None:
        assert self.pipeline is not None
        leases = self.leases
        if leases is not None and not leases.holds(source.name):
            log.debug(
                "not running: another crawler holds the source", extra={"source": source.name}
            )
            return None
        task = asyncio.current_task()
        assert task is not None
        self._runs.add(task)
        if leases is not None:
            leases.running.add(source.name)
        try:
            return await self.pipeline.run_source(source)
        finally:
            self._runs.discard(task)
            if leases is not None:
                leases.running.discard(source.name)

    # -- modes -------------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Run on schedule until `stop` is set or SIGTERM/SIGINT arrives."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info(
            "crawler starting",
            extra={
                "sources": len(self.config.sources),
                "backend": self.config.storage.backend,
                "listen": f"{self.config.metrics.host}:{self.config.metrics.port}",
            },
        )
        try:
            async with contextlib.AsyncExitStack() as stack:
                await self._open(stack)
                from crawler.server import make_app, start_server  # aiohttp.web: not for `once`

                app = make_app(self.metrics, self.readiness)
                runner = await start_server(app, self.config.metrics.host, self.config.metrics.port)
                stack.push_async_callback(runner.cleanup)
                await self._start_leases(stack)
                self.scheduler = Scheduler(self.config.sources, self.metrics, self._run_tracked)
                self.scheduler.start()
                stack.callback(self.scheduler.pause)
                self.metrics.up.set(1)
                notify("READY=1")
                interval = watchdog_interval()
                if interval:
                    wd = asyncio.create_task(watchdog_loop(interval), name="watchdog")
                    stack.callback(wd.cancel)
                log.info("crawler started")
                await stop.wait()
                notify("STOPPING=1")
                log.info("crawler stopping", extra={"runs_in_progress": len(self._runs)})
                self.scheduler.pause()
                await self._finish_runs()
        except Exception:
            log.critical("crawler crashed", exc_info=True)
            raise
        finally:
            self.metrics.up.set(0)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        log.info("crawler stopped")

    async def _start_leases(self, stack: contextlib.AsyncExitStack) -> None:
        """With PostgreSQL, run only the sources whose lease this crawler holds."""
        if self._database is None:
            return
        leases = self.leases = Leases(
            self._database,
            [s.name for s in self.config.sources if s.enabled],
            self.config.instance,
            self.config.lease_ttl,
            self.metrics,
            self.config.state_dir / "leases.json",
        )
        with contextlib.suppress(CrawlerError):  # unreachable: keep the last-held sources
            await leases.refresh()
        task = asyncio.create_task(leases.run_forever(), name="leases")

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await leases.release()

        stack.push_async_callback(stop)

    async def _finish_runs(self) -> None:
        """Let runs under way finish (no new URLs) within the grace time, then cancel them."""
        if self.pipeline is not None:
            self.pipeline.stopping = True
        runs = list(self._runs)
        if not runs:
            return
        started = time.monotonic()
        done, pending = await asyncio.wait(runs, timeout=SHUTDOWN_GRACE)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        log.info(
            "runs finished for shutdown",
            extra={
                "finished": len(done),
                "cancelled": len(pending),
                "duration_ms": round((time.monotonic() - started) * 1000),
            },
        )

    async def once(self, names: Sequence[str] = ()) -> list[RunResult]:
        """Run the named sources (all enabled ones by default) once, concurrently."""
        sources = (
            [self.config.source(n) for n in names]
            if names
            else [s for s in self.config.sources if s.enabled]
        )
        async with contextlib.AsyncExitStack() as stack:
            pipeline = await self._open(stack)
            return list(await asyncio.gather(*(pipeline.run_source(s) for s in sources)))
