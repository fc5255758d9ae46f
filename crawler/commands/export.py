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
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from crawler.config.root import Config
from crawler.config.storage import StorageConfig
from crawler.errors import StoreError
from crawler.storage.readers import META, PostgresReader, Row, Selection, SqliteReader

log = logging.getLogger("crawler.export")

FORMATS = ("jsonl", "csv")

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
