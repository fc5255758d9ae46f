"""History of changed records (`history: true`): every version kept in `scraped_data_history`.

A version is written when a record of a history source is stored for the first time or with
data different from the stored row, in the same transaction as the upsert, so the history and
`scraped_data` never disagree (a crash loses both or neither). An unchanged re-crawl, and a
spool replay of a batch already stored, add nothing. Both stores use the SQL below; the store
modules call it only for batches that hold a history source's records, so sources without
history pay nothing.

The table grows by one row per change; `storage.history_retention` (default a year) bounds it:
`crawler/storage/retention.py` deletes older versions hourly, in small batches.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

PG_MIGRATION = """
CREATE TABLE scraped_data_history (
    id       bigserial   PRIMARY KEY,
    source   text        NOT NULL,
    key      text        NOT NULL,
    data     jsonb       NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scraped_data_history_key ON scraped_data_history (source, key, seen_at);
"""

SQLITE_MIGRATION = """
CREATE TABLE scraped_data_history (
    id       INTEGER PRIMARY KEY,
    source   TEXT    NOT NULL,
    key      TEXT    NOT NULL,
    data     TEXT    NOT NULL,
    seen_at  TEXT    NOT NULL
);
CREATE INDEX scraped_data_history_key ON scraped_data_history (source, key, seen_at);
"""

# Runs after the batch is in the staging table and before the upsert: a staged record whose
# data differs from its stored row (or that has none) is a new version. The newest of a key
# within the batch wins, as in the upsert.
PG_INSERT = """
INSERT INTO scraped_data_history (source, key, data)
SELECT s.source, s.key, s.data
  FROM (SELECT DISTINCT ON (source, key) source, key, data FROM crawler_stage
         WHERE source = ANY(%s) ORDER BY source, key, ord DESC) AS s
  LEFT JOIN scraped_data AS t ON t.source = s.source AND t.key = s.key
 WHERE t.data IS DISTINCT FROM s.data
"""

_SQLITE_INSERT = (
    "INSERT INTO scraped_data_history (source, key, data, seen_at) SELECT ?1, ?2, ?3, ?4"
    " WHERE NOT EXISTS (SELECT 1 FROM scraped_data WHERE source = ?1 AND key = ?2 AND data = ?3)"
)


def history_sources(sources: Iterable[Any]) -> frozenset[str]:
    """Names of the configured sources with `history: true`."""
    return frozenset(s.name for s in sources if getattr(s, "history", False))


def wanted(history: frozenset[str], sources: Iterable[str]) -> list[str]:
    """The history sources among a batch's sources (empty: skip the history statement)."""
    return sorted(history.intersection(sources)) if history else []


def sqlite_insert(conn: sqlite3.Connection, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
    """Record new versions among `rows` (source, key, data, first_seen, last_seen) before they
    are upserted, inside the caller's transaction."""
    conn.executemany(_SQLITE_INSERT, [(s, k, d, seen) for s, k, d, seen, _ in rows])
