"""`crawler quarantine -c FILE [--list|--retry|--drop]`: the records the store refused for their
data (crawler/storage/quarantine.py), counted, listed, stored again or dropped."""

from __future__ import annotations

import json
import time
from typing import Any

from crawler.errors import StoreDataError
from crawler.observability.metrics import Metrics
from crawler.record import Record
from crawler.storable import storable_record
from crawler.storage.quarantine import Isolation, isolate
from crawler.storage.sink import Sink


async def command(config: Any, action: str) -> int:
    """`crawler quarantine -c FILE [--list|--retry|--drop]`: print JSON, return the exit status.

    No action: how many records are quarantined, by source. `--list`: one JSON object per
    record. `--retry`: write them to the store again (after the database or the data was
    fixed); the ones it takes leave the quarantine, the others stay with their new error.
    `--drop`: delete them all.
    """
    sink = Sink(config, Metrics())
    await sink.open(drainer=False)
    q = sink.quarantine
    try:
        if action == "list":
            for row in await q.entries():
                print(
                    json.dumps(
                        {
                            "source": row.source,
                            "key": row.key,
                            "url": row.url,
                            "error": row.error,
                            "refused_by": row.refused_by,
                            "quarantined_at": time.strftime(
                                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(row.quarantined_at)
                            ),
                            "attempts": row.attempts,
                            "data": row.data,
                        }
                    )
                )
            return 0
        if action == "drop":
            print(json.dumps({"dropped": await q.drop()}))
            return 0
        if action == "retry":
            rows = await q.entries()
            records = [
                Record(r.source, r.key, storable_record(r.data), r.url)
                if isinstance(r.data, dict)
                else r.record
                for r in rows
            ]
            found = Isolation()
            if records:
                try:
                    await sink.store.write(records)
                    found.stored = records
                except StoreDataError as exc:
                    await isolate(sink.store.write, records, exc, found)
            await q.remove(found.stored)
            if found.refused:
                await q.add(found.refused, sink.backend)
            print(
                json.dumps(
                    {"retried": len(records), "stored": len(found.stored), "quarantined": q.rows}
                )
            )
            return 0 if not found.refused else 1
        by_source: dict[str, int] = {}
        for row in await q.entries():
            by_source[row.source] = by_source.get(row.source, 0) + 1
        print(json.dumps({"quarantined": q.rows, "by_source": by_source, "file": str(q.path)}))
        return 0
    finally:
        await sink.close()
