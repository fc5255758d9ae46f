"""What one scrape of the pipeline exporter costs as `scraped_data` grows.

Starts a throwaway PostgreSQL (the test suite's helper), migrates it with the crawler's own
store, fills `scraped_data` to each size in ROWS (200 sources, a tenth unprocessed, as
tests/integration/test_table_plans.py does; the triggers of migration 6 count the rows as they
arrive), VACUUM ANALYZEs, then times SCRAPES full scrapes of the exporter (connect, read,
close: what Prometheus pays every 30 s) and, for comparison, the whole-table aggregate the
exporter ran before migration 6. Prints the median and the range per size.

    .venv/bin/python bench/exporter_cost.py [--rows 1000000,5000000] [--scrapes 20]

Loopback only; the 5-million-row fill takes a minute or two and ~2 GB of disk in /tmp.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from crawler.config.storage import StorageConfig
from crawler.storage.postgres import PostgresStore
from exporters import pipeline
from tests.helpers import PostgresServer

SOURCES = 200


def fill(dsn: str, start: int, stop: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"""
            INSERT INTO scraped_data (source, key, data, first_seen, last_seen, processed)
            SELECT 's' || (i %% {SOURCES}), i::text, jsonb_build_object('price', i %% 1000),
                   now() - (i %% 365) * interval '1 day', now() - (i %% 7) * interval '1 hour',
                   i %% 10 <> 0
            FROM generate_series(%s::bigint, %s::bigint) AS i
            """,
            [start, stop],
        )
        conn.execute("VACUUM ANALYZE scraped_data")


def timed(fn: object, times: int) -> list[float]:
    out = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rows", default="1000000,5000000", help="comma-separated table sizes")
    ap.add_argument("--scrapes", type=int, default=20)
    args = ap.parse_args()
    pg = PostgresServer()
    pg.start()
    rows_done = 0
    table = []
    try:
        dsn = pg.create_database()
        store = PostgresStore(StorageConfig(dsn=dsn))
        asyncio.run(store.open())
        asyncio.run(store.close())
        registry = pipeline.build_registry(dsn, 30.0)

        def scrape() -> None:
            got = {s.name: s.value for f in registry.collect() for s in f.samples}
            assert got["crawler_data_scrape_success"] == 1

        def aggregate() -> None:
            with psycopg.connect(dsn) as conn:
                conn.execute(pipeline._SCRAPED_DATA_SQL).fetchall()

        for size in (int(x) for x in args.rows.split(",")):
            print(f"filling to {size:,} rows ...", file=sys.stderr, flush=True)
            fill(dsn, rows_done + 1, size)
            rows_done = size
            scrape()  # warm: the first connection of a database reads its catalogue
            now = timed(scrape, args.scrapes)
            before = timed(aggregate, max(3, args.scrapes // 5))
            table.append(
                (
                    f"{size:,}",
                    f"{1000 * statistics.median(now):.1f} ms ({1000 * min(now):.1f}-"
                    f"{1000 * max(now):.1f})",
                    f"{1000 * statistics.median(before):.0f} ms ({1000 * min(before):.0f}-"
                    f"{1000 * max(before):.0f})",
                )
            )
    finally:
        pg.destroy()
    print(f"\n{SOURCES} sources; median (min-max) of {args.scrapes} scrapes\n")
    print(
        "| rows in scraped_data | exporter scrape (counts table) | whole-table aggregate (before) |"
    )
    print("|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
