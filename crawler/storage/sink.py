"""The sink: where the pipeline's batches go, and the one place that decides store or spool.

With the embedded SQLite store every batch goes straight to it. With PostgreSQL:

* while the spool is empty and the database answers, batches go to PostgreSQL;
* when a write finds the database unreachable, that batch and every later one go to the spool,
  until a drainer has emptied it (oldest first), so a record's newer version can never be
  overtaken by its older one;
* the drainer notices the database's return with a capped exponential backoff with jitter,
  and drains in batches while crawling goes on.

A record is *counted* (stored or spooled metric, DEBUG log line with its keys) only after the
transaction that holds it has committed. At the spool's cap a batch is refused: SpoolFull is
raised to the run, logged at ERROR and counted in `crawler_records_refused_total`.

A batch that the store or the spool refuses for its data (StoreDataError) is bisected: the
records they take are stored, each refused one is quarantined alone (crawler/storage/quarantine.py),
both when writing directly and when draining, so one poisoned record never jams a source or
the drain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from crawler.backoff import Backoff
from crawler.config.root import Config
from crawler.errors import ErrorKind, SpoolFull, StoreDataError, StoreError, StoreUnavailable
from crawler.lifecycle import Part, stop_task
from crawler.observability.metrics import Metrics
from crawler.record import Record, RunRow, Written
from crawler.storage.history import history_sources
from crawler.storage.quarantine import Isolation, Quarantine, Write, isolate
from crawler.storage.spool import Spool
from crawler.storage.store import Store, make_store

log = logging.getLogger("crawler.sink")


class Sink(Part):
    """Store-or-spool for records and run rows; owns the store, the spool and the drainer."""

    def __init__(self, config: Config, metrics: Metrics, store: Store | None = None) -> None:
        self.config, self.metrics = config, metrics
        self.store = (
            store
            if store is not None
            else make_store(config.storage, history_sources(config.sources))
        )
        self.backend = self.store.backend
        self.spool: Spool | None = None
        if self.store.remote:
            self.spool = Spool(config.spool.path, config.spool.max_bytes)
        local = config.spool.path if self.store.remote else config.storage.sqlite_path
        assert local is not None
        self.quarantine = Quarantine(local)
        self.db_up = True
        self._wake = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self._drain_lock = (
            asyncio.Lock()
        )  # one drain at a time: `crawler spool --drain` and the task
        self.log_keys = log.isEnabledFor(logging.DEBUG)

    def configure(self, config: Config) -> None:
        """Take a reloaded configuration: its sources' `history` (the storage settings cannot
        change while running, crawler.config.diff)."""
        self.config = config
        self.store.history = history_sources(config.sources)

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, *, drainer: bool = True) -> None:
        """Open store and spool; with `drainer`, a task drains the spool whenever it can."""
        m = self.metrics
        if self.spool is not None:
            await self.spool.open()
            spool = self.spool
            m.spool_max_bytes.set(spool.max_bytes)
            m.watch_spool(
                lambda: self.db_up, lambda: spool.records, spool.file_bytes, spool.oldest_age
            )
            try:
                await self.store.open()
                self._set_db(True)
            except StoreUnavailable as exc:
                self._set_db(False, str(exc))
            if drainer:
                self._drainer = asyncio.create_task(self._drain_forever(), name="spool-drainer")
            if drainer and not spool.empty:
                log.info("spool holds data from before; draining", extra=spool.stats())
                self._wake.set()
        else:
            await self.store.open()
        await self.quarantine.open()
        m.watch_quarantine(lambda: self.quarantine.rows)

    async def close(self) -> None:
        if self._drainer is not None:
            await stop_task(self._drainer)
            self._drainer = None
        await self.quarantine.close()
        await self.store.close()
        if self.spool is not None:
            await self.spool.close()

    @property
    def writable(self) -> tuple[bool, str]:
        """Whether a batch would be accepted now, and why not."""
        if self.spool is not None and self.spool.full:
            return False, "spool full" if self.db_up else "database unreachable and spool full"
        return True, "ok"

    @property
    def _direct(self) -> bool:
        """Write to the store itself: no spool, or the database is up and the spool empty."""
        return self.spool is None or (self.db_up and self.spool.empty)

    def _set_db(self, up: bool, why: str = "") -> None:
        if self.spool is None:
            return
        if up != self.db_up:
            if up:
                log.info("database reachable", extra={"backend": "postgres"})
            else:
                log.warning(
                    "database unreachable; spooling locally",
                    extra={
                        "backend": "postgres",
                        "error_kind": ErrorKind.STORAGE.value,
                        "error": why,
                    },
                )
        self.db_up = up

    # -- writing -----------------------------------------------------------------------------

    async def write(self, source: str, records: Sequence[Record]) -> Written:
        """Commit `records` to the store or the spool; raise SpoolFull if neither can take them.

        Returns how many keys the store took as new and as changed, and how many records went
        to the spool instead (counted as neither: the store has not compared them yet)."""
        m = self.metrics
        tally: list[Written] = []  # one per committed store write, bisected parts included

        async def counted(part: Sequence[Record]) -> None:
            tally.append(await self.store.write(part))

        if self._direct:
            started = time.monotonic()
            found = Isolation()
            try:
                stored = await self._isolating(counted, records, self.backend, found)
            except StoreUnavailable as exc:
                m.store_errors.labels(self.backend).inc()
                if self.spool is None:
                    raise
                self._set_db(False, str(exc))
                self._wake.set()
                if found.stored:  # it went away half-way through bisecting a refused batch
                    m.records_stored.labels(source, self.backend).inc(len(found.stored))
                    self._committed("stored", source, found.stored, self.backend)
                records = found.untouched(records) if found.stored or found.refused else records
            else:
                m.store_duration.labels(self.backend).observe(time.monotonic() - started)
                m.records_stored.labels(source, self.backend).inc(len(stored))
                self._committed("stored", source, stored, self.backend)
                return sum(tally, Written())
        spooled = await self._spool(source, records)
        return sum(tally, Written(spooled=spooled))

    async def _isolating(
        self, write: Write, records: Sequence[Record], refused_by: str, found: Isolation
    ) -> Sequence[Record]:
        """`write(records)`, and the records it took; when it refuses the batch for its data,
        bisect it: store what it takes, quarantine each refused record on its own."""
        try:
            await write(records)
            return records
        except StoreDataError as exc:
            log.warning(
                "batch refused for its data; isolating the bad records",
                extra={
                    "backend": refused_by,
                    "records": len(records),
                    "error_kind": ErrorKind.STORAGE.value,
                    "error": str(exc),
                },
            )
            try:
                await isolate(write, records, exc, found)
            finally:
                if found.refused:
                    await self._quarantine(found.refused, refused_by)
            return found.stored

    async def _quarantine(self, refused: list[tuple[Record, str]], refused_by: str) -> None:
        await self.quarantine.add(refused, refused_by)
        for record, error in refused:
            self.metrics.records_quarantined.labels(record.source).inc()
            log.error(
                "record quarantined",
                extra={
                    "source": record.source,
                    "key": record.key,
                    "url": record.url,
                    "backend": refused_by,
                    "error_kind": ErrorKind.STORAGE.value,
                    "error": error,
                },
            )

    async def _spool(self, source: str, records: Sequence[Record]) -> int:
        """Commit `records` to the spool; how many it took (the rest were quarantined)."""
        assert self.spool is not None
        try:
            records = await self._isolating(self.spool.add, records, "spool", Isolation())
        except (SpoolFull, StoreError) as exc:  # at the cap, or the card is full or failing
            self.metrics.records_refused.labels(source).inc(len(records))
            log.error(
                "records refused: spool full"
                if isinstance(exc, SpoolFull)
                else "records refused: spool write failed",
                extra={
                    "source": source,
                    "records": len(records),
                    "error_kind": ErrorKind.STORAGE.value,
                    "error": str(exc),
                },
            )
            raise
        self.metrics.records_spooled.labels(source).inc(len(records))
        self._committed("spooled", source, records, "spool")
        self._wake.set()
        return len(records)

    def _committed(self, what: str, source: str, records: Sequence[Record], backend: str) -> None:
        if self.log_keys:  # DEBUG only: the crash tests read these lines to know what counted
            log.debug(
                f"records {what}",
                extra={
                    "source": source,
                    "backend": backend,
                    "records": len(records),
                    "keys": [r.key for r in records],
                },
            )

    async def write_run(self, run: RunRow) -> None:
        if self._direct:
            try:
                await self.store.write_run(run)
                return
            except StoreUnavailable as exc:
                if self.spool is None:
                    raise
                self._set_db(False, str(exc))
        assert self.spool is not None  # not direct, or the store failed with a spool present
        await self.spool.add_run(run)
        self._wake.set()

    # -- draining ----------------------------------------------------------------------------

    async def drain_once(self) -> int:
        """Move one batch of the oldest spooled data into PostgreSQL; return how many rows moved.

        Raises StoreUnavailable if the database cannot take it.
        """
        async with self._drain_lock:
            return await self._drain_batch()

    async def _drain_batch(self) -> int:
        assert self.spool is not None
        spool, n = self.spool, self.config.spool.drain_batch
        ids, records = await spool.peek_records(n)
        if records:
            started = time.monotonic()
            # A poisoned record is quarantined and the rest stored, so the drain moves on.
            stored = await self._isolating(self.store.write, records, self.backend, Isolation())
            self.metrics.store_duration.labels(self.backend).observe(time.monotonic() - started)
            await spool.remove("records", ids)
            self.metrics.spool_drained.inc(len(records))
            by_source: dict[str, int] = {}
            for r in stored:
                by_source[r.source] = by_source.get(r.source, 0) + 1
            for source, count in by_source.items():
                self.metrics.records_stored.labels(source, self.backend).inc(count)
            return len(records)
        run_ids, runs = await spool.peek_runs(n)
        for run in runs:
            await self.store.write_run(run)
        await spool.remove("runs", run_ids)
        return len(runs)

    async def drain(self) -> int:
        """Drain until the spool is empty; raise StoreUnavailable if the database is away."""
        total = 0
        while True:
            moved = await self.drain_once()
            if not moved:
                return total
            total += moved

    async def _drain_forever(self) -> None:
        assert self.spool is not None
        backoff = Backoff(base=0.5, cap=30.0)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while not self.spool.empty or not self.db_up:
                try:
                    if self.spool.empty:
                        await self.store.ping()
                    else:
                        started = time.monotonic()
                        moved = await self.drain()
                        log.info(
                            "spool drained",
                            extra={
                                "records": moved,
                                "duration_ms": round((time.monotonic() - started) * 1000),
                            },
                        )
                except StoreUnavailable as exc:
                    self._set_db(False, str(exc))
                    await asyncio.sleep(backoff.next_delay())
                    continue
                except Exception:
                    # A batch PostgreSQL rejects for good must not spin: log and back off.
                    log.exception(
                        "draining the spool failed", extra={"error_kind": ErrorKind.STORAGE.value}
                    )
                    await asyncio.sleep(backoff.next_delay())
                    continue
                backoff.reset()
                self._set_db(True)
