"""Leases: several crawlers share their sources through PostgreSQL itself.

A source runs only on the crawler holding its lease (a row in `crawler_leases`). Each crawler
renews what it holds and takes free or expired leases every `lease_ttl / 3`, up to its fair
share (sources divided by the crawlers alive), releasing extras it is not running. A crawler
that dies stops renewing: its leases expire after `lease_ttl` and the others take them over.
An orderly stop releases them at once. While the database is unreachable, a crawler keeps the
sources it last held and crawls them into its spool (the others cannot take them meanwhile
unless they can reach the database, in which case the leases expire as designed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.errors import CrawlerError
from crawler.lifecycle import Part, stop_task
from crawler.metrics import Metrics
from crawler.store import PostgresStore

if TYPE_CHECKING:
    from crawler.store import Connection

log = logging.getLogger("crawler.lease")

_TAKE = """
INSERT INTO crawler_leases AS l (source, holder, expires_at)
VALUES (%(source)s, %(holder)s, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (source) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
 WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
RETURNING source
"""


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
        self.store, self.sources, self.ttl, self.metrics = store, sources, ttl, metrics
        # Stable across restarts, so a crawler restarted by systemd renews its own leases at
        # once instead of waiting for them to expire. Hence `instance` must be unique per host.
        self.holder = f"{instance}@{socket.gethostname()}"
        # The sources last held survive a restart, so a crawler that boots while the database
        # is away goes on crawling them into its spool. Written only when the set changes.
        self.state_file = state_file
        self.held: set[str] = self._load_last_held()
        self.running: set[str] = set()  # sources with a run under way: never released mid-run
        self._renewer: asyncio.Task[None] | None = None
        for s in sources:
            metrics.leased.labels(s).set(0)

    async def open(self) -> None:
        with contextlib.suppress(CrawlerError):  # unreachable: keep the last-held sources
            await self.refresh()
        self._renewer = asyncio.create_task(self.run_forever(), name="leases")

    async def close(self) -> None:
        if self._renewer is not None:
            await stop_task(self._renewer)
            self._renewer = None
            await self.release()

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
        return source in self.held

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
            share = math.ceil(len(self.sources) / (others + 1))
            # Ours first (renewal), then the rest in a per-holder order so crawlers spread out.
            order = sorted(self.sources, key=lambda s: (s not in self.held, hash((s, self.holder))))
            taken: list[str] = []
            for source in order:
                if len(taken) >= share and source not in self.running:
                    continue
                cur = await conn.execute(
                    _TAKE, {"source": source, "holder": self.holder, "ttl": self.ttl}
                )
                if await cur.fetchone():
                    taken.append(source)
            extra = [s for s in self.held if s not in taken and s not in self.running]
            if extra:
                await conn.execute(
                    "DELETE FROM crawler_leases WHERE holder = %s AND source = ANY(%s)",
                    (self.holder, extra),
                )
            result["taken"] = set(taken)

        await self.store.run(work)
        new: set[str] = result["taken"]
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
                await self.refresh()
            except CrawlerError as exc:
                log.warning(
                    "could not renew leases; keeping the sources held",
                    extra={"held": sorted(self.held), "error": str(exc)},
                )
            await asyncio.sleep(self.ttl / 3)

    async def release(self) -> None:
        """Give every lease back (orderly stop), so others take the sources at once."""

        async def work(conn: Connection) -> None:
            await conn.execute("DELETE FROM crawler_leases WHERE holder = %s", (self.holder,))
            await conn.execute("DELETE FROM crawler_instances WHERE holder = %s", (self.holder,))

        try:
            await self.store.run(work)
            log.info("leases released", extra={"held": sorted(self.held)})
        except CrawlerError as exc:
            log.warning(
                "could not release leases; they expire by themselves", extra={"error": str(exc)}
            )
