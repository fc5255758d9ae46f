"""`crawler status -c FILE`: every source's last and next run, for a person or a script.

It asks the running crawler (`/status` on its metrics listener, with the status token from the
state directory) and, when no crawler runs, reads the store's `crawler_jobs` instead (then
without next runs or leases, and it says so). A table on stdout, or the JSON document with
`--json`. Exit status: 0 when no source's last run failed, 1 when one did, 3 when no crawler is
running (as `systemctl status` for an inactive unit; the table still shows the last runs).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

from crawler.config.root import Config
from crawler.errors import CrawlerError
from crawler.observability.pidfile import read_token, running_pid
from crawler.run.status import STORE_ONLY, duration_text, exit_status, source_entries

EXIT_NOT_RUNNING = 3
TIMEOUT = 10.0  # seconds for the crawler to answer /status (it may read the store)


def command(config: Config, as_json: bool) -> int:
    pid = running_pid(config.state_dir)
    document, why = ask_crawler(config) if pid is not None else (None, "no crawler is running")
    if document is None:
        if pid is not None:
            print(f"crawler: {why}; showing the store's last runs", file=sys.stderr)
        document = asyncio.run(from_store(config, why))
    out = json.dumps(document, indent=2) if as_json else "\n".join(table(document))
    print(out)
    if pid is None:
        return EXIT_NOT_RUNNING
    return exit_status(document)


def status_url(config: Config) -> str:
    """The running crawler's /status, reached on this machine."""
    host, port = config.metrics.listen
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.metrics.tls is not None else "http"
    return f"{scheme}://{host}:{port}/status"


def ask_crawler(config: Config) -> tuple[dict[str, Any] | None, str]:
    """The running crawler's status document, or None and why it could not be read."""
    request = urllib.request.Request(status_url(config))
    token = read_token(config.state_dir)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = None
    if config.metrics.tls is not None:
        # Its own certificate, often self-signed for the Pi's name: trusted as such here.
        context = ssl.create_default_context(cafile=str(config.metrics.tls.cert_file))
        context.check_hostname = False
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:
            document: dict[str, Any] = json.loads(response.read())
            return document, ""
    except urllib.error.HTTPError as exc:
        why = f"the crawler's /status answered {exc.code}"
        if exc.code == 401:
            why += f" (run as a user who can read {config.state_dir / 'status.token'})"
    except (OSError, ValueError) as exc:
        why = f"the crawler's /status could not be read: {exc}"
    return None, why


async def from_store(config: Config, why: str) -> dict[str, Any]:
    """The status document from the store alone: last runs, spool, quarantine, database."""
    from crawler.observability.metrics import Metrics
    from crawler.run.status import storage_entries
    from crawler.storage.postgres import PostgresStore
    from crawler.storage.runs import postgres_last_runs, sqlite_last_runs
    from crawler.storage.sink import Sink

    names = [s.name for s in config.sources]
    sink = Sink(config, Metrics())
    stored: dict[str, Any] = {}
    document: dict[str, Any] = {"crawler": {"running": False, "instance": config.instance}}
    try:
        await sink.open(drainer=False)
    except CrawlerError as exc:
        document["sources"] = source_entries(config.sources, None, {}, None, None)
        document["database"] = {"backend": sink.backend, "reachable": False, "error": str(exc)}
        document["note"] = f"{why}: {STORE_ONLY}"
        return document
    try:
        try:
            if isinstance(sink.store, PostgresStore):
                if sink.db_up:
                    stored = await postgres_last_runs(sink.store, names)
            else:
                stored = await sqlite_last_runs(config.storage.sqlite_path, names)
        except CrawlerError as exc:
            print(f"crawler: cannot read the last runs: {exc}", file=sys.stderr)
        document["sources"] = source_entries(config.sources, None, stored, None, None)
        document.update(storage_entries(sink))
    finally:
        await sink.close()
    document["note"] = f"{why}: {STORE_ONLY}"
    return document


# --------------------------------------------------------------------------- the table

COLUMNS = ("SOURCE", "SCHEDULE", "LAST RUN", "RESULT", "RECORDS", "TOOK", "ERROR", "FAILING SINCE")


def table(document: Mapping[str, Any], now: float | None = None) -> Iterator[str]:
    """The document as lines for a terminal: one row per source, then the storage."""
    now = time.time() if now is None else now
    running = bool(document.get("crawler", {}).get("running"))
    head = [*COLUMNS, *(("NEXT RUN", "LEASE") if running else ())]
    rows = [head]
    for name, s in document.get("sources", {}).items():
        last = s.get("last_run") or {}
        took = last.get("duration_seconds")
        row = [
            name,
            s["schedule"],
            _when(last.get("started_at"), now),
            last.get("status", "never ran"),
            records_text(last) if last else "-",
            duration_text(took) if took is not None else "-",
            last.get("error_kind") or _short(last.get("error")) or "-",
            _when(s.get("failing_since"), now),
        ]
        if running:
            lease = s.get("lease")
            row += [_when(s.get("next_run"), now), "-" if lease is None else _yes(lease)]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        yield "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
    yield ""
    yield from _storage_lines(document)
    if document.get("note"):
        yield f"note: {document['note']}"


def records_text(last: Mapping[str, Any]) -> str:
    """`12 (3 new, 2 changed)`; only `12` for a run stored before these counts (null)."""
    new, changed = last.get("records_new"), last.get("records_changed")
    if new is None or changed is None:
        return str(last["records"])
    return f"{last['records']} ({new} new, {changed} changed)"


def _storage_lines(document: Mapping[str, Any]) -> Iterator[str]:
    db = document.get("database") or {}
    if db:
        state = "reachable" if db.get("reachable") else f"UNREACHABLE ({db.get('error', '')})"
        yield f"database:   {db.get('backend')} {state}".rstrip(" ()")
    spool = document.get("spool")
    if spool is not None:
        age = duration_text(float(spool.get("oldest_age_seconds") or 0))
        yield f"spool:      {spool.get('records', 0)} records, oldest {age}"
    if document.get("quarantine") is not None:
        yield f"quarantine: {document['quarantine']} records"
    browser = document.get("browser")
    if browser is not None:
        yield f"browser:    {'reachable' if browser.get('reachable') else 'UNREACHABLE'}"
    reload = document.get("crawler", {}).get("reload")
    if reload and not reload.get("ok", True):
        yield "reload:     the last reload FAILED: " + "; ".join(reload.get("problems", []))


def _when(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    local = time.localtime(ts)
    same_day = time.localtime(now)[:3] == local[:3]
    text = time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M", local)
    delta = ts - now
    rel = duration_text(abs(round(delta)))
    return f"{text} (in {rel})" if delta > 0 else f"{text} ({rel} ago)"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _short(text: str | None, limit: int = 40) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
