"""The service's lifecycle: start the parts in order, run, and stop them in reverse, bounded.

Start, stop and crash are distinct log events. On SIGTERM/SIGINT: the scheduler stops starting
runs, runs under way stop taking new URLs and finish their in-flight fetches within
`shutdown_grace`, pending batches are flushed to PostgreSQL or the spool, and the process
exits 0. Everything is held in one AsyncExitStack, so a crash half-way through start-up still
closes what was opened. On SIGHUP the configuration is read again (crawler.run.reload) and
handed to each part; signals arriving during a reload make one more, never a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from crawler.config.root import Config
from crawler.config.sources import SourceConfig
from crawler.fetch.client import Fetcher
from crawler.fetch.netguard import SourcePolicy
from crawler.observability.forget import forget_source
from crawler.observability.metrics import Metrics
from crawler.run.pipeline import Pipeline
from crawler.run.result import RunResult
from crawler.run.status import SourceStates
from crawler.storage.history import history_sources
from crawler.storage.postgres import PostgresStore
from crawler.storage.sink import Sink
from crawler.storage.store import make_store

if TYPE_CHECKING:
    from aiohttp.abc import AbstractResolver

    from crawler.config.diff import ConfigDiff
    from crawler.render.browser import Browser
    from crawler.run.lease import Leases
    from crawler.run.reload import Reloads
    from crawler.run.schedule import Scheduler

log = logging.getLogger("crawler.service")

SHUTDOWN_GRACE = 20.0  # seconds for runs under way to finish after SIGTERM (systemd gives 90)


class Service:
    """Owns the fetcher, sink, pipeline, scheduler and HTTP server of one process.

    Every part is an async context manager, entered in order on one AsyncExitStack and closed
    in reverse. `opened()` is the public way in for a caller that runs sources itself (`once`,
    tests): the parts a run needs, open for the block, with `sink` and `readiness()` readable.
    """

    def __init__(
        self,
        config: Config,
        registry: CollectorRegistry | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.config = config
        self._resolver = resolver  # DNS for the fetcher; None: the system's (tests pass theirs)
        self.metrics = Metrics(registry)
        self.metrics.instance_info.labels(config.instance).set(1)
        self.scheduler: Scheduler | None = None
        self.sink: Sink | None = None
        self.fetcher: Fetcher | None = None
        self.pipeline: Pipeline | None = None
        self._runs: set[asyncio.Task[RunResult | None]] = set()
        self._running: set[str] = set()  # sources with a run under way
        self.states = SourceStates()  # each source's last run here, for /status
        self.reloads: Reloads | None = None
        self.leases: Leases | None = None
        # The PostgreSQL store, when configured, is also where crawlers share sources (leases).
        self.database: PostgresStore | None = None
        self.browser: Browser | None = None  # only when a source has `render`

    # -- parts -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[Pipeline]:
        """Fetcher, store (with the spool in front of PostgreSQL) and sink, open for the block."""
        storage = self.config.storage
        history = history_sources(self.config.sources)
        self.database = PostgresStore(storage, history) if storage.dsn else None
        store = self.database or make_store(storage, history)
        async with contextlib.AsyncExitStack() as stack:
            self.fetcher = fetcher = await stack.enter_async_context(
                Fetcher(self.config, self.metrics, resolver=self._resolver)
            )
            self.sink = await stack.enter_async_context(Sink(self.config, self.metrics, store))
            if self.config.renders and self.config.browser is not None:
                # Imported here: without a `render` source nothing browser-related is loaded.
                from crawler.render.browser import Browser

                self.browser = await stack.enter_async_context(
                    Browser(self.config.browser, self.metrics)
                )
            self.pipeline = Pipeline(self.config, self.metrics, fetcher, self.sink, self.browser)
            yield self.pipeline

    def readiness(self) -> tuple[bool, dict[str, object]]:
        checks: dict[str, object] = {}
        scheduler_ok = self.scheduler is not None and self.scheduler.running
        checks["scheduler"] = "running" if scheduler_ok else "stopped"
        sink_ok, why = self.sink.writable if self.sink is not None else (False, "not open")
        checks["store"] = why
        if self.sink is not None and self.sink.spool is not None:
            checks["database_up"] = self.sink.db_up
            checks["spool"] = self.sink.spool.stats()
        if self.browser is not None:  # said, not required: only `render` sources need it
            checks["browser"] = "up" if self.browser.up else "down"
        return scheduler_ok and sink_ok, checks

    async def _run_tracked(self, source: SourceConfig) -> RunResult | None:
        assert self.pipeline is not None
        leases = self.leases
        if leases is not None and not leases.holds(source.name):
            log.debug(
                "not running: another crawler holds the source", extra={"source": source.name}
            )
            return None
        if source.name in self._running:  # removed and added back while its run goes on
            return None
        if not any(s.name == source.name for s in self.config.sources):
            return None  # started by the scheduler just before a reload removed it
        task = asyncio.current_task()
        assert task is not None
        self._runs.add(task)
        self._running.add(source.name)
        if leases is not None:
            leases.running.add(source.name)
        try:
            result = await self.pipeline.run_source(source)
        finally:
            self._runs.discard(task)
            self._running.discard(source.name)
            if leases is not None:
                leases.running.discard(source.name)
        if any(s.name == source.name for s in self.config.sources):
            self.states.record(result)
        else:  # a reload removed it during the run: its series go with the run's end
            forget_source(self.metrics, source.name)
        return result

    # -- reload and status ---------------------------------------------------------------------

    async def _reload_when(self, wanted: asyncio.Event) -> None:
        while True:
            await wanted.wait()
            wanted.clear()  # SIGHUPs during this reload: one more after it
            await self.reload()

    async def reload(self) -> bool:
        """Read the configuration file again and apply it; False (and nothing changed) when it
        is refused. systemd hears RELOADING=1 before and READY=1 after, so `systemctl reload`
        returns once the crawler is done."""
        from crawler.observability.systemd import notify

        assert self.reloads is not None
        notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            loaded = await self.reloads.load()
            if loaded is None:
                return False
            new, change, text = loaded
            await self._apply(new, change)
            self.reloads.applied(new, change, text)
            return True
        finally:
            notify("READY=1")

    async def _apply(self, new: Config, change: ConfigDiff) -> None:
        """Hand a reloaded configuration to every part, the scheduler last: the leases of the
        added sources are taken before their first run (which starts at once) asks for them.
        A run the old schedule starts meanwhile runs its old definition whole (its own plan)."""
        from crawler.errors import CrawlerError

        assert self.fetcher and self.sink and self.pipeline and self.scheduler
        self.config = new
        # The fetcher's settings cannot change (crawler.config.diff): its sources' policies do.
        self.fetcher.config = new
        self.fetcher.policies = {s.name: SourcePolicy.of(s, new) for s in new.sources}
        self.sink.configure(new)
        self.pipeline.configure(new, change.changed)
        if self.leases is not None:
            self.leases.configure([s.name for s in new.sources if s.enabled])
            with contextlib.suppress(CrawlerError):  # unreachable: the renewer tries again
                await self.leases.renew()
        self.scheduler.configure(new.sources, change.changed)
        for name in change.removed:
            self.states.forget(name)
            if name not in self._running:
                forget_source(self.metrics, name)
        logging.getLogger().setLevel(new.log_level)

    async def status(self) -> dict[str, Any]:
        """The /status document (crawler.run.status): this process's runs, the store's last
        runs for the sources it has not run yet (or that fail), next runs, leases, storage."""
        from crawler.run.status import source_entries, storage_entries

        assert self.sink is not None and self.scheduler is not None
        sources = self.config.sources
        ask = [
            s.name
            for s in sources
            if s.name not in self.states.last or s.name in self.states.failing_since
        ]
        leases = self.leases
        document: dict[str, Any] = {
            "crawler": {
                "running": True,
                "instance": self.config.instance,
                "pid": os.getpid(),
                "tasks": len(asyncio.all_tasks()),
                "reload": self.reloads.summary() if self.reloads is not None else None,
            },
            "sources": source_entries(
                sources,
                self.states,
                await self._stored_runs(ask),
                self.scheduler.next_runs(),
                None if leases is None else {s.name: s.name in leases.held for s in sources},
            ),
        }
        document.update(storage_entries(self.sink))
        if self.browser is not None:  # configured (a `render` source): is it answering?
            document["browser"] = {"reachable": self.browser.up}
        return document

    async def _stored_runs(self, names: list[str]) -> dict[str, Any]:
        from crawler.errors import CrawlerError
        from crawler.storage.runs import postgres_last_runs, sqlite_last_runs

        if not names or self.sink is None:
            return {}
        try:
            if self.database is not None:
                if not self.sink.db_up:
                    return {}
                return await postgres_last_runs(self.database, names)
            return await sqlite_last_runs(self.config.storage.sqlite_path, names)
        except CrawlerError as exc:
            log.warning("status: cannot read the last runs", extra={"error": str(exc)})
            return {}

    # -- modes -------------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Run on schedule until `stop` is set or SIGTERM/SIGINT arrives."""
        stop = stop or asyncio.Event()
        reload_wanted = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # From the first moment: SIGHUP's default action would end the process.
        loop.add_signal_handler(signal.SIGHUP, reload_wanted.set)
        log.info(
            "crawler starting",
            extra={
                "sources": len(self.config.sources),
                "backend": self.config.storage.backend,
                "listen": f"{self.config.metrics.host}:{self.config.metrics.port}",
            },
        )
        # The parts only `run` has are imported here: `once` does without them (RSS, issue 13;
        # aiohttp.web above all).
        from crawler.lifecycle import background
        from crawler.observability.pidfile import PidFile
        from crawler.observability.server import HttpServer
        from crawler.observability.systemd import notify, watchdog_interval, watchdog_loop
        from crawler.run.lease import Leases
        from crawler.run.reload import Reloads
        from crawler.run.schedule import Scheduler
        from crawler.storage.retention import Retention

        self.reloads = Reloads(self.config, self.metrics)
        pidfile = PidFile(self.config.state_dir)

        try:
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(self.opened())

                mc = self.config.metrics
                await stack.enter_async_context(
                    HttpServer(self.metrics, self.readiness, mc, self.status, pidfile.token)
                )
                if self.database is not None:  # run only the sources whose lease we hold
                    self.leases = await stack.enter_async_context(
                        Leases(
                            self.database,
                            [s.name for s in self.config.sources if s.enabled],
                            self.config.instance,
                            self.config.lease_ttl,
                            self.metrics,
                            self.config.state_dir / "leases.json",
                        )
                    )
                # Old run rows and history versions pruned hourly (not in `once`).
                await stack.enter_async_context(
                    Retention(self.config.storage, self.metrics, self.database)
                )
                self.scheduler = await stack.enter_async_context(
                    Scheduler(self.config.sources, self.metrics, self._run_tracked)
                )
                self.metrics.up.set(1)
                # Found by `crawler reload` and `crawler status` from now on.
                await stack.enter_async_context(pidfile)
                await stack.enter_async_context(
                    background(self._reload_when(reload_wanted), "reload")
                )
                notify("READY=1")
                interval = watchdog_interval()
                if interval:
                    await stack.enter_async_context(background(watchdog_loop(interval), "watchdog"))
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
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("crawler stopped")

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
        async with self.opened() as pipeline:
            return list(await asyncio.gather(*(pipeline.run_source(s) for s in sources)))
