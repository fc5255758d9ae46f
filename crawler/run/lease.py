"""Leases: several crawlers share their sources through PostgreSQL itself.

A source runs only on the crawler holding its lease (a row in `crawler_leases`). Each crawler
renews what it holds and takes free or expired leases every `lease_ttl / 3`, up to its fair
share (sources divided by the crawlers alive), releasing extras it is not running. A crawler
that dies stops renewing: its leases expire after `lease_ttl` and the others take them over.
An orderly stop releases them at once. While the database is unreachable, a crawler keeps the
sources it last held and crawls them into its spool (the others cannot take them meanwhile
unless they can reach the database, in which case the leases expire as designed).

Leases have a connection of their own (`PostgresStore.session`), so a renewal never waits
behind record batches on a slow NAS, and each renewal must finish within a safety margin of
`lease_ttl / 3`, on the server too (statement and lock timeouts). A renewal counts from the
moment it was sent (PostgreSQL's `now()` can be no earlier), so the leases it renewed are
trusted for `lease_ttl` minus that margin: if no renewal succeeds by then while the database
still answers (slowly, or with an error), this crawler has possibly lost them and starts no
new run of those sources until a renewal succeeds ("leases lapsed" in the log, and
`crawler_source_leased` 0). Runs under way finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.errors import CrawlerError, StoreTimeout, StoreUnavailable
from crawler.lifecycle import Part, stop_task
from crawler.observability.metrics import Metrics
from crawler.storage.postgres import PostgresStore

if TYPE_CHECKING:
    from crawler.storage.postgres import Connection

log = logging.getLogger("crawler.lease")

# Takes (or renews) several leases in one statement. The rows are locked in source-name order,
# the same order in every crawler, so two crawlers taking overlapping sets at once wait for
# each other instead of deadlocking (one statement per source in a per-crawler order did
# deadlock with 200 sources and two crawlers: bench/scale.py found it).
_TAKE = """
INSERT INTO crawler_leases AS l (source, holder, expires_at)
SELECT s, %(holder)s, now() + make_interval(secs => %(ttl)s)
FROM unnest(%(sources)s::text[]) AS s ORDER BY s
ON CONFLICT (source) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
 WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
RETURNING source
"""
_FREE = """
SELECT s FROM unnest(%(sources)s::text[]) AS s
WHERE NOT EXISTS (SELECT 1 FROM crawler_leases l WHERE l.source = s AND l.expires_at >= now())
"""


# The share of lease_ttl a renewal may take, and by which the leases it renewed are trusted
# for less than lease_ttl; also the time between renewals.
MARGIN = 1 / 3


def fair_share(sources: int, others: int) -> int:
    """How many sources one crawler takes when `others` other crawlers are alive."""
    return math.ceil(sources / (others + 1))


def spread(names: Iterable[str], holder: str) -> list[str]:
    """`names` in this holder's own order: crawlers prefer different sources (fewer collisions
    when several take free ones at once), and one holder's order is the same after a restart."""

    def rank(name: str) -> bytes:
        return hashlib.blake2b(f"{holder}\0{name}".encode(), digest_size=8).digest()

    return sorted(names, key=rank)


def split_held(
    held: Iterable[str], running: set[str], share: int, holder: str
) -> tuple[list[str], list[str]]:
    """(core, busy): the held sources to keep (up to the share, in this holder's order), and
    those beyond the share with a run under way, renewed for that run only ("draining": no new
    run starts here, so they are released when it ends; without this an overloaded crawler,
    whose sources are always running, would keep them all)."""
    mine = spread(held, holder)
    return mine[:share], [s for s in mine[share:] if s in running]


class Leases(Part):
    """Which of the configured sources this crawler may run now.

    `async with`: take leases (or keep the last-held sources while the database is away),
    renew them every `ttl / 3` in a task, and on leaving stop that task and give them back.
    """

    def __init__(
        self,
        store: PostgresStore,
        sources: list[str],
        instance: str,
        ttl: float,
        metrics: Metrics,
        state_file: Path,
    ) -> None:
        self.sources, self.ttl, self.metrics = sources, ttl, metrics
        self.margin = ttl * MARGIN
        # A connection of its own, bounded by the margin: never behind a record batch.
        self.db = store.session("crawler-leases", self.margin)
        # Until when (time.monotonic()) the leases last renewed are trusted, and whether the
        # last renewal failed because the database could not be reached at all.
        self.trusted_until = 0.0
        self.away = False
        self.lapsed = False
        # Stable across restarts, so a crawler restarted by systemd renews its own leases at
        # once instead of waiting for them to expire. Hence `instance` must be unique per host.
        self.holder = f"{instance}@{socket.gethostname()}"
        # The sources last held survive a restart, so a crawler that boots while the database
        # is away goes on crawling them into its spool. Written only when the set changes.
        self.state_file = state_file
        self.held: set[str] = self._load_last_held()
        self.running: set[str] = set()  # sources with a run under way: never released mid-run
        self.draining: set[str] = set()  # held beyond the share for a run under way only
        self._renewer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # a reload changed the sources: refresh now
        for s in sources:
            metrics.leased.labels(s).set(0)

    def configure(self, sources: list[str]) -> None:
        """Follow a reloaded source list: the next refresh, started now, takes leases of the
        added sources and gives back those of the removed ones (after their run under way)."""
        for s in set(sources) - set(self.sources):
            self.metrics.leased.labels(s).set(0)
        self.sources = sources
        self._wake.set()

    async def open(self) -> None:
        with contextlib.suppress(CrawlerError):  # unreachable: keep the last-held sources
            await self.renew()
        self._renewer = asyncio.create_task(self.run_forever(), name="leases")

    async def close(self) -> None:
        if self._renewer is not None:
            await stop_task(self._renewer)
            self._renewer = None
            await self.release()
        await self.db.close()

    def _load_last_held(self) -> set[str]:
        try:
            names = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return set()
        return {n for n in names if n in self.sources} if isinstance(names, list) else set()

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(sorted(self.held)))
            tmp.replace(self.state_file)
        except OSError as exc:
            log.warning("could not save the held sources", extra={"error": str(exc)})

    def holds(self, source: str) -> bool:
        """May a new run of `source` start here? Not for one being handed over (`draining`),
        nor while the leases may have lapsed."""
        return source in self.held and source not in self.draining and self.trusted()

    def trusted(self) -> bool:
        """Are the held leases still ours? Yes within `lease_ttl - margin` of the last renewal
        sent, and while the database cannot be reached at all (the spool takes the records);
        past that, with the database answering, the crawler says so once."""
        if self.away or time.monotonic() < self.trusted_until:
            return True
        if not self.lapsed and self.held:
            self.lapsed = True
            log.warning(
                "leases lapsed: no new runs of these sources until a renewal succeeds",
                extra={"held": sorted(self.held), "margin_s": self.margin},
            )
            for s in self.held:
                self.metrics.leased.labels(s).set(0)
        return False

    async def renew(self) -> None:
        """`refresh()` and note how long its leases are trusted; CrawlerError if it failed."""
        sent = time.monotonic()
        try:
            await self.refresh()
        except CrawlerError as exc:
            # Unreachable: keep the sources, as documented above. Answering too slowly or with
            # an error: the trust runs out.
            self.away = isinstance(exc, StoreUnavailable) and not isinstance(exc, StoreTimeout)
            raise
        self.away = False
        self.trusted_until = sent + self.ttl - self.margin
        if self.lapsed:
            self.lapsed = False
            log.info("leases renewed again", extra={"held": sorted(self.held)})

    async def refresh(self) -> None:
        """Renew, take up to a fair share, release extras; keep the old set if the DB is away."""
        result: dict[str, Any] = {}

        async def work(conn: Connection) -> None:
            # A heartbeat per crawler, so one that holds nothing yet still counts for the share.
            await conn.execute(
                "INSERT INTO crawler_instances (holder, seen_at) VALUES (%s, now())"
                " ON CONFLICT (holder) DO UPDATE SET seen_at = now()",
                (self.holder,),
            )
            await conn.execute(
                "DELETE FROM crawler_instances WHERE seen_at < now() - make_interval(secs => %s)",
                (self.ttl * 10,),
            )
            cur = await conn.execute(
                "SELECT count(*) FROM crawler_instances"
                " WHERE seen_at > now() - make_interval(secs => %s) AND holder <> %s",
                (self.ttl, self.holder),
            )
            row = await cur.fetchone()
            others = int(row[0]) if row else 0  # count(*) always returns one row
            share = fair_share(len(self.sources), others)
            configured = set(self.sources)
            mine = {s for s in self.held if s in configured}
            core, busy = split_held(mine, self.running, share, self.holder)
            # Removed by a reload with a run under way: kept for that run only, like `busy`.
            busy += sorted(s for s in self.held - configured if s in self.running)
            args = {"holder": self.holder, "ttl": self.ttl}
            cur = await conn.execute(_TAKE, {**args, "sources": core + busy})
            renewed = {row[0] for row in await cur.fetchall()}
            kept = [s for s in core if s in renewed]
            draining = {s for s in busy if s in renewed}
            # Then free or expired ones, up to the share.
            fresh: list[str] = []
            if len(kept) < share:
                candidates = [s for s in self.sources if s not in self.held]
                cur = await conn.execute(_FREE, {"sources": candidates})
                free = spread((row[0] for row in await cur.fetchall()), self.holder)
                free = free[: share - len(kept)]
                if free:
                    cur = await conn.execute(_TAKE, {**args, "sources": free})
                    got = {row[0] for row in await cur.fetchall()}
                    fresh = [s for s in free if s in got]
            taken = kept + fresh + sorted(draining)
            result["draining"] = draining
            extra = [s for s in self.held if s not in taken and s not in self.running]
            if extra:
                await conn.execute(
                    "DELETE FROM crawler_leases WHERE holder = %s AND source = ANY(%s)",
                    (self.holder, extra),
                )
            result["taken"] = set(taken)

        await self.db.run(work)
        new: set[str] = result["taken"]
        self.draining = result["draining"]
        if new != self.held:
            log.info(
                "leases changed",
                extra={
                    "holder": self.holder,
                    "held": sorted(new),
                    "gained": sorted(new - self.held),
                    "lost": sorted(self.held - new),
                },
            )
            self.held = new
            self._save()
        for s in self.sources:
            self.metrics.leased.labels(s).set(1 if s in new else 0)

    async def run_forever(self) -> None:
        while True:
            try:
                await self.renew()
            except CrawlerError as exc:
                log.warning(
                    "could not renew leases"
                    + ("; keeping the sources held" if self.away else " within the margin"),
                    extra={"held": sorted(self.held), "error": str(exc)},
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.margin)
            self._wake.clear()
            self.trusted()  # says so now if the trust ran out meanwhile

    async def release(self) -> None:
        """Give every lease back (orderly stop), so others take the sources at once."""

        async def work(conn: Connection) -> None:
            await conn.execute("DELETE FROM crawler_leases WHERE holder = %s", (self.holder,))
            await conn.execute("DELETE FROM crawler_instances WHERE holder = %s", (self.holder,))

        try:
            await self.db.run(work)
            log.info("leases released", extra={"held": sorted(self.held)})
        except CrawlerError as exc:
            log.warning(
                "could not release leases; they expire by themselves", extra={"error": str(exc)}
            )
