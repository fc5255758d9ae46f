"""Every source's state, as `/status` and `crawler status` show it.

Per source: its schedule, its last run (when, result, records and how many of them were new
and changed, duration, error kind), since when it has been failing, its next run and whether
this crawler holds its lease; then the spool, the quarantine and the database. A running
crawler knows the runs it made itself and reads the others' last runs from the store's
`crawler_jobs`; without a running crawler (`crawler status` falls back to the store) there are
no next runs and no leases, and the document says so. The JSON has one object per source,
keyed by its name; times are Unix seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from crawler.config.sources import SourceConfig
from crawler.run.result import RunResult
from crawler.storage.runs import LastRun
from crawler.storage.sink import Sink

STORE_ONLY = "last runs from the store, no next runs, no leases"


def schedule_text(source: SourceConfig) -> str:
    """`every 15m` (`+ jitter 1m`), `cron 0 * * * *`, or `disabled`."""
    if not source.enabled:
        return "disabled"
    if source.cron:
        return f"cron {source.cron}"
    assert source.every is not None
    text = f"every {duration_text(source.every)}"
    return f"{text} (jitter {duration_text(source.jitter)})" if source.jitter else text


def duration_text(seconds: float) -> str:
    """A duration as a person writes it: `1h30m`, `15m`, `2.5s`."""
    if seconds < 60:
        return f"{seconds:g}s"
    parts, rest = [], round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


class SourceStates:
    """The last run of each source made by this process, and since when each fails."""

    def __init__(self) -> None:
        self.last: dict[str, RunResult] = {}
        self.failing_since: dict[str, float] = {}

    def record(self, result: RunResult) -> None:
        self.last[result.source] = result
        if result.ok:
            self.failing_since.pop(result.source, None)
        else:
            self.failing_since.setdefault(result.source, result.started_at)

    def forget(self, name: str) -> None:
        self.last.pop(name, None)
        self.failing_since.pop(name, None)


def run_entry(result: RunResult) -> dict[str, Any]:
    return {
        "started_at": round(result.started_at, 3),
        "finished_at": round(result.finished_at, 3),
        "status": result.status,
        "pages": result.pages,
        "records": result.records,
        "records_new": result.records_new,
        "records_changed": result.records_changed,
        "duration_seconds": round(result.finished_at - result.started_at, 3),
        "error_kind": result.error_kind,
        "error": result.error,
    }


def stored_entry(run: LastRun) -> dict[str, Any]:
    return {
        "started_at": round(run.started_at, 3),
        "finished_at": None if run.finished_at is None else round(run.finished_at, 3),
        "status": run.status,
        "pages": run.pages,
        "records": run.records,
        "records_new": run.records_new,
        "records_changed": run.records_changed,
        "duration_seconds": (
            None if run.finished_at is None else round(run.finished_at - run.started_at, 3)
        ),
        "error_kind": None,  # crawler_jobs keeps the message, not the kind
        "error": run.error,
    }


def source_entries(
    sources: Iterable[SourceConfig],
    states: SourceStates | None,
    stored: Mapping[str, LastRun],
    next_runs: Mapping[str, float] | None,
    leases: Mapping[str, bool] | None,
) -> dict[str, dict[str, Any]]:
    """One object per source: this process's own last run where it made one, else the
    store's; `next_runs`/`leases` None when no crawler runs (null in every entry)."""
    out: dict[str, dict[str, Any]] = {}
    for s in sources:
        mine = states.last.get(s.name) if states is not None else None
        kept = stored.get(s.name)
        if mine is not None:
            last: dict[str, Any] | None = run_entry(mine)
            since = states.failing_since.get(s.name) if states is not None else None
            if since is not None and kept is not None and kept.failing_since is not None:
                since = min(since, kept.failing_since)  # failing since before this start
        else:
            last = stored_entry(kept) if kept is not None else None
            since = kept.failing_since if kept is not None else None
        out[s.name] = {
            "schedule": schedule_text(s),
            "enabled": s.enabled,
            "last_run": last,
            "failing_since": None if since is None else round(since, 3),
            "next_run": None if next_runs is None else _rounded(next_runs.get(s.name)),
            "lease": None if leases is None else leases.get(s.name, False),
        }
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def exit_status(document: Mapping[str, Any]) -> int:
    """0 when no source's last run failed, 1 otherwise (3, no crawler, is the caller's)."""
    sources: Mapping[str, Any] = document.get("sources", {})
    failed = [
        name
        for name, entry in sources.items()
        if entry.get("last_run") and entry["last_run"].get("status") != "success"
    ]
    return 1 if failed else 0


def storage_entries(sink: Sink) -> dict[str, Any]:
    """The spool (with PostgreSQL), the quarantine and the database, as the sink sees them."""
    spool = sink.spool.stats() if sink.spool is not None else None
    return {
        "spool": None
        if spool is None
        else {
            "records": spool["records"],
            "runs": spool["jobs"],
            "oldest_age_seconds": spool["oldest_age_seconds"],
            "used_bytes": spool["used_bytes"],
            "max_bytes": spool["max_bytes"],
        },
        "quarantine": sink.quarantine.rows,
        # The embedded store is a local file: there is no server to be away.
        "database": {"backend": sink.backend, "reachable": sink.db_up or sink.spool is None},
        "browser": None,  # the running crawler's own (the service fills it in when it has one)
    }
