"""`crawler export`: stream stored records out as JSON lines or CSV, in constant memory.

The hand-off to downstream batch jobs: `--unprocessed` selects what no job has taken yet, and
`--mark-processed` sets `processed` on exactly the rows written, in the transaction that read
them, only once the whole output is written (a failed or cut-short export marks nothing).

Constant memory: PostgreSQL rows come through a server-side cursor (`DECLARE … CURSOR`, fetched
`BATCH` rows at a time), SQLite rows through its lazy cursor; each row is written and dropped.
CSV needs its columns before the first row, so the data's top-level keys are read first, by
the database, in the same snapshot.

Exactness of `--mark-processed`: on PostgreSQL the selected rows are locked (`FOR UPDATE`) and
their keys kept in a temporary table before streaming, so a crawler cannot change a row between
export and mark (its upsert of such a row waits for the export's commit), and rows arriving
meanwhile are neither exported nor marked. On SQLite the export holds the write lock
(`BEGIN IMMEDIATE`) for the same effect.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from crawler.config.root import Config
from crawler.config.storage import StorageConfig
from crawler.errors import StoreError

log = logging.getLogger("crawler.export")

FORMATS = ("jsonl", "csv")
BATCH = 1000  # rows per FETCH from the server-side cursor
META = ("source", "key", "first_seen", "last_seen")
# source, key, first_seen, last_seen (ISO 8601 text), data (JSON text)
Row = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class Selection:
    """Which stored records to export, and whether to mark them processed."""

    sources: tuple[str, ...] = ()  # empty: every source in the store
    since: float | None = None  # seconds: only records seen within this time
    unprocessed: bool = False
    mark: bool = False


# --------------------------------------------------------------------------- writers


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


class JsonLines:
    """One object per record: source, key, first_seen, last_seen, data (the stored JSON)."""

    columns_needed = False

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def start(self, columns: list[str]) -> None:
        pass

    def write(self, row: Row) -> None:
        source, key, first_seen, last_seen, data = row
        self.out.write(
            f'{{"source":{_json_string(source)},"key":{_json_string(key)},'
            f'"first_seen":"{first_seen}","last_seen":"{last_seen}","data":{data}}}\n'
        )


class Csv:
    """A header, then one line per record: the record's columns, then its data's top-level
    fields flattened (lists and objects as JSON text)."""

    columns_needed = True

    def __init__(self, out: TextIO) -> None:
        self.writer = csv.writer(out, lineterminator="\n")
        self.fields: list[str] = []

    def start(self, columns: list[str]) -> None:
        self.fields = columns
        # A data field named like a record column keeps its data in a "data." column.
        header = [f"data.{c}" if c in META else c for c in columns]
        self.writer.writerow([*META, *header])

    def write(self, row: Row) -> None:
        data = json.loads(row[4])
        if not isinstance(data, dict):
            data = {}
        self.writer.writerow([*row[:4], *(_csv_value(data.get(c)) for c in self.fields)])


def order_columns(found: Iterable[str], preferred: Iterable[str]) -> list[str]:
    """The configured fields first, in their order, then any others the data has, sorted."""
    found_set = set(found)
    first = [c for c in dict.fromkeys(preferred) if c in found_set]
    return first + sorted(found_set - set(first))


# --------------------------------------------------------------------------- PostgreSQL


def _pg_filter(sel: Selection) -> tuple[str, list[Any]]:
    clauses, params = ["true"], list[Any]()
    if sel.sources:
        clauses.append("s.source = ANY(%s)")
        params.append(list(sel.sources))
    if sel.since is not None:
        clauses.append("s.last_seen >= now() - make_interval(secs => %s)")
        params.append(sel.since)
    if sel.unprocessed:
        clauses.append("NOT s.processed")
    return " AND ".join(clauses), params


class PostgresReader:
    """The selected rows of PostgreSQL, in one transaction: `columns()`, `rows()`, then
    `finish()` (marks, when asked, and commits). Leaving without `finish()` rolls back."""

    def __init__(self, storage: StorageConfig, sel: Selection) -> None:
        self.storage, self.sel = storage, sel
        self.conn: Any = None
        self.where, self.params = _pg_filter(sel)
        self.rows_from = "scraped_data s"

    @contextmanager
    def _errors(self) -> Iterator[None]:
        import psycopg

        try:
            yield
        except psycopg.errors.UndefinedTable as exc:
            raise StoreError("nothing stored yet: PostgreSQL has no scraped_data table") from exc
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: {str(exc).strip()}") from exc

    def __enter__(self) -> PostgresReader:
        import psycopg
        from psycopg import IsolationLevel

        try:
            self.conn = psycopg.connect(
                self.storage.dsn or "",
                password=self.storage.password,
                connect_timeout=max(1, int(self.storage.connect_timeout)),
                application_name="crawler-export",
            )
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {str(exc).strip()}") from exc
        with self._errors():
            if self.sel.mark:
                # Lock what will be exported, and remember exactly which rows those are.
                self.conn.execute(
                    "CREATE TEMP TABLE crawler_export (source text, key text,"
                    " PRIMARY KEY (source, key)) ON COMMIT DROP"
                )
                self.conn.execute(
                    "INSERT INTO crawler_export SELECT s.source, s.key FROM scraped_data s"
                    f" WHERE {self.where} FOR UPDATE",
                    self.params,
                )
                self.rows_from = "scraped_data s JOIN crawler_export USING (source, key)"
                self.where, self.params = "true", []
            else:
                # One snapshot for the columns and the rows; nothing written.
                self.conn.isolation_level = IsolationLevel.REPEATABLE_READ
                self.conn.read_only = True
            self.conn.execute("SET LOCAL TIME ZONE 'UTC'")
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()  # after finish(): committed; otherwise rolled back, nothing marked

    def columns(self) -> list[str]:
        """The top-level keys of the selected records' data."""
        with self._errors():
            keys = self.conn.execute(
                f"SELECT DISTINCT k FROM {self.rows_from}, jsonb_object_keys(CASE"
                " jsonb_typeof(s.data) WHEN 'object' THEN s.data ELSE '{}' END) AS k"
                f" WHERE {self.where}",
                self.params,
            )
            return [r[0] for r in keys]

    def rows(self) -> Iterator[Row]:
        """Every selected row, through a server-side cursor (`BATCH` rows per FETCH)."""
        with self._errors():
            cursor = self.conn.cursor(name="crawler_export_rows")
            cursor.itersize = BATCH
            cursor.execute(
                "SELECT s.source, s.key, s.first_seen, s.last_seen, s.data::text"
                f" FROM {self.rows_from} WHERE {self.where} ORDER BY s.source, s.key",
                self.params,
            )
            for source, key, first_seen, last_seen, data in cursor:
                yield (source, key, first_seen.isoformat(), last_seen.isoformat(), data)
            cursor.close()

    def finish(self) -> None:
        """Mark the exported rows processed (with `mark`) and commit."""
        with self._errors():
            if self.sel.mark:
                self.conn.execute(
                    "UPDATE scraped_data s SET processed = true FROM crawler_export e"
                    " WHERE s.source = e.source AND s.key = e.key"
                )
            self.conn.commit()


# --------------------------------------------------------------------------- SQLite


def _sqlite_filter(sel: Selection) -> tuple[str, list[Any]]:
    clauses, params = ["1"], list[Any]()
    if sel.sources:
        clauses.append(f"source IN ({','.join('?' * len(sel.sources))})")
        params += sel.sources
    if sel.since is not None:
        cutoff = datetime.fromtimestamp(time.time() - sel.since, timezone.utc).isoformat()
        clauses.append("last_seen >= ?")  # the store writes ISO 8601 in UTC: text order is time
        params.append(cutoff)
    if sel.unprocessed:
        clauses.append("NOT processed")
    return " AND ".join(clauses), params


class SqliteReader:
    """As `PostgresReader`, from the embedded store."""

    def __init__(self, path: Path, sel: Selection) -> None:
        self.path, self.sel = path, sel
        self.conn: sqlite3.Connection | None = None
        self.where, self.params = _sqlite_filter(sel)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store {self.path}: {exc}") from exc

    def __enter__(self) -> SqliteReader:
        if not self.path.exists():
            raise StoreError(f"nothing stored yet: {self.path} does not exist")
        mode = "rw" if self.sel.mark else "ro"
        with self._errors():
            self.conn = sqlite3.connect(
                f"file:{self.path}?mode={mode}", uri=True, isolation_level=None
            )
            self.conn.execute("PRAGMA busy_timeout=30000")
            # IMMEDIATE: the write lock now, so no record changes between export and mark; a
            # plain export reads one WAL snapshot and never blocks the crawler.
            self.conn.execute("BEGIN IMMEDIATE" if self.sel.mark else "BEGIN")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()  # without COMMIT: rolled back, nothing marked

    def columns(self) -> list[str]:
        assert self.conn is not None
        with self._errors():
            keys = self.conn.execute(
                "SELECT DISTINCT j.key FROM scraped_data, json_each(scraped_data.data) AS j"
                f" WHERE json_type(scraped_data.data) = 'object' AND {self.where}",
                self.params,
            )
            return [r[0] for r in keys]

    def rows(self) -> Iterator[Row]:
        assert self.conn is not None
        with self._errors():
            yield from self.conn.execute(
                "SELECT source, key, first_seen, last_seen, data FROM scraped_data"
                f" WHERE {self.where} ORDER BY source, key",
                self.params,
            )

    def finish(self) -> None:
        assert self.conn is not None
        with self._errors():
            if self.sel.mark:
                self.conn.execute(
                    f"UPDATE scraped_data SET processed = 1 WHERE {self.where}", self.params
                )
            self.conn.execute("COMMIT")


# --------------------------------------------------------------------------- the command


@contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    """stdout, or FILE written as FILE.partial and renamed only when complete."""
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    partial = Path(path + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as f:
        try:
            yield f
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            f.close()
            partial.unlink(missing_ok=True)
            raise
    partial.replace(path)


def export(
    storage: StorageConfig,
    sel: Selection,
    fmt: str,
    out_path: str | None,
    preferred_columns: Iterable[str] = (),
) -> int:
    """Write the selected records; return how many. Raise StoreError, or OSError for the output.

    The rows are marked and committed only after the output is complete (flushed; a file also
    synced and renamed into place): a failure anywhere before marks nothing.
    """
    reader: PostgresReader | SqliteReader = (
        PostgresReader(storage, sel) if storage.dsn else SqliteReader(storage.sqlite_path, sel)
    )
    count = 0
    with reader:
        with _output(out_path) as out:
            writer = JsonLines(out) if fmt == "jsonl" else Csv(out)
            if writer.columns_needed:
                writer.start(order_columns(reader.columns(), preferred_columns))
            for row in reader.rows():
                writer.write(row)
                count += 1
        reader.finish()
    return count


def command(
    config: Config,
    names: list[str],
    fmt: str,
    since: str | None,
    out_path: str | None,
    unprocessed: bool,
    mark: bool,
) -> int:
    """`crawler export`: 0 when everything selected was written (and marked, if asked); 1 when
    the store could not be read or the output not written (nothing marked); 2 for arguments
    the configuration does not allow."""
    from crawler.config.convert import positive_duration

    unknown = [n for n in names if n not in {s.name for s in config.sources}]
    if unknown:
        print(f"crawler: unknown source(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    try:
        seconds = positive_duration(since) if since is not None else None
    except ValueError as exc:
        print(f"crawler: --since: {exc}", file=sys.stderr)
        return 2
    sel = Selection(tuple(names), seconds, unprocessed, mark)
    chosen = [s for s in config.sources if not names or s.name in names]
    preferred = [f.name for s in chosen for f in s.fields]
    try:
        count = export(config.storage, sel, fmt, out_path, preferred)
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more to say to it, nothing was marked.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        if mark:
            print("crawler: the output was closed early: nothing marked processed", file=sys.stderr)
            return 1
        return 0
    except (StoreError, OSError) as exc:
        print(f"crawler: export failed, nothing marked processed: {exc}", file=sys.stderr)
        return 1
    log.info(
        "export finished",
        extra={"records": count, "marked_processed": count if mark else 0, "format": fmt},
    )
    return 0
