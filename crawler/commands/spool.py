"""`crawler spool -c FILE [--drain]`: the spool's depth and oldest age as JSON; `--drain` moves
it into PostgreSQL now."""

from __future__ import annotations

import asyncio
import json
import sys

from crawler.config.root import Config
from crawler.errors import EXIT_FAILED, StoreUnavailable
from crawler.observability.metrics import Metrics
from crawler.storage.sink import Sink


def command(config: Config, drain: bool) -> int:
    """Print the spool's state (and drain it); exit 1 without a spool or when draining fails."""
    if not config.storage.dsn:
        print(
            "crawler: no spool: the embedded SQLite store is in use (no storage.dsn)",
            file=sys.stderr,
        )
        return EXIT_FAILED

    async def go() -> int:
        sink = Sink(config, Metrics())
        await sink.open(drainer=False)
        try:
            assert sink.spool is not None
            before = sink.spool.stats()
            print(json.dumps({"spool": before, "database_up": sink.db_up}))
            if drain:
                try:
                    moved = await sink.drain()
                except StoreUnavailable as exc:
                    print(f"crawler: cannot drain: {exc}", file=sys.stderr)
                    return EXIT_FAILED
                print(json.dumps({"drained": moved, "spool": sink.spool.stats()}))
            return 0
        finally:
            await sink.close()

    return asyncio.run(go())
