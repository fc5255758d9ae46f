"""What storage keeps: an extracted `Record`, a finished source run's `RunRow`, and their JSON.

Extraction produces records; the sink, the stores and the spool only carry them. Keeping both
types here lets storage import them without importing extraction (lxml, parsel) at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Record:
    """One extracted record with its idempotency key, and the page it came from (for the
    quarantine's sake: a refused record names its URL)."""

    source: str
    key: str
    data: dict[str, Any]
    url: str = ""


@dataclass(frozen=True)
class RunRow:
    """One finished source run for `crawler_jobs`; `run_id` makes a spool replay a no-op."""

    run_id: str
    source: str
    instance: str
    status: str
    started_at: float
    finished_at: float
    pages: int
    records: int
    error: str | None
    # Of `records`, the keys the store took as new and as changed; None in rows of crawlers
    # from before these counts (a spooled row's JSON without them still loads).
    records_new: int | None = None
    records_changed: int | None = None


@dataclass(frozen=True)
class Written:
    """What one committed batch did to the store: `new` keys inserted, `changed` keys whose data
    differed from the stored row. A key re-stored with the same data counts as neither; a key
    repeated within the batch counts once (its last version wins, as in the upsert)."""

    new: int = 0
    changed: int = 0
    # Records that went to the spool (PostgreSQL away): not known as new or changed, and not
    # attributed back to their run when the spool is drained later.
    spooled: int = 0

    def __add__(self, other: Written) -> Written:
        return Written(
            self.new + other.new, self.changed + other.changed, self.spooled + other.spooled
        )


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_ENCODE_SORTED = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def dumps(value: Any, sort_keys: bool = False) -> str:
    """Compact JSON text (one encoder built once: json.dumps with options builds one per call)."""
    return _ENCODE_SORTED(value) if sort_keys else _ENCODE(value)
