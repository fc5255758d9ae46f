"""End to end: real aiohttp site on 127.0.0.1 → crawler → real PostgreSQL or embedded SQLite."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from crawler.config.root import load_config
from crawler.service import Service
from tests.crawler_proc import run_cli
from tests.helpers import free_port, wait_for
from tests.site import ITEMS_PER_PAGE, Site, html_source

PAGES = 5


def config_text(
    site: Site, tmp_path: Path, dsn: str | None = None, port: int = 0, extra: str = ""
) -> str:
    storage = f"storage: {{dsn: '{dsn}'}}\n" if dsn else ""
    return f"""\
instance: test-{tmp_path.name[:8]}
state_dir: {tmp_path}/var
log_level: DEBUG
metrics: {{listen: "127.0.0.1:{port or free_port()}"}}
{storage}fetch: {{politeness_delay: 0s, robots: false, conditional_get: false, retry: {{attempts: 1}}}}
sources:
{html_source(site, "html", PAGES)}  - name: api
    every: 1h
    urls: ["{site.base}/api/{{0..{PAGES - 1}}}"]
    parser: json
    items: items
    fields: {{text: text, author: author, tags: tags}}
{extra}"""


def write_config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "crawler.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
async def test_crawled_twice_stored_once_with_job_rows(
    site: Site, tmp_path: Path, request: pytest.FixtureRequest, backend: str
):
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgres" else None
    cfg = load_config(write_config(tmp_path, config_text(site, tmp_path, dsn)))
    registry = CollectorRegistry()
    service = Service(cfg, registry)
    for _ in range(2):
        results = await service.once()
        assert [(r.source, r.status, r.pages, r.records) for r in results] == [
            ("html", "success", PAGES, PAGES * ITEMS_PER_PAGE),
            ("api", "success", PAGES, PAGES * ITEMS_PER_PAGE),
        ]

    def rows(sql: str) -> list[tuple]:
        if dsn:
            with psycopg.connect(dsn) as c:
                return list(c.execute(sql).fetchall())
        c = sqlite3.connect(tmp_path / "var" / "crawler.sqlite")
        try:
            return c.execute(sql).fetchall()
        finally:
            c.close()

    assert rows("select source, count(*) from scraped_data group by source order by source") == [
        ("api", PAGES * ITEMS_PER_PAGE),
        ("html", PAGES * ITEMS_PER_PAGE),
    ]
    one = rows("select data from scraped_data where source = 'html' and key = 'p0-q1'")[0][0]
    one = json.loads(one) if isinstance(one, str) else one
    assert one == {
        "id": "p0-q1",
        "text": "Quote 1 of page 0 v0",
        "author": "Author 1",
        "tags": ["t1", "t4"],
    }
    jobs = rows("select source, status, pages, records from crawler_jobs order by id")
    assert sorted(jobs) == sorted(
        [("html", "success", PAGES, 100), ("api", "success", PAGES, 100)] * 2
    )

    v = registry.get_sample_value
    label = "postgres" if dsn else "sqlite"
    assert v("crawler_records_stored_total", {"source": "html", "backend": label}) == 200
    assert v("crawler_records_extracted_total", {"source": "api"}) == 200
    assert v("crawler_source_runs_total", {"source": "html", "outcome": "success"}) == 2
    assert v("crawler_source_last_success_timestamp_seconds", {"source": "html"}) > 0
    assert v("crawler_source_failed_pages_total", {"source": "html"}) == 0  # there from the start
    host = f"127.0.0.1:{site.port}"
    assert v("crawler_requests_total", {"source": "api", "host": host, "status_class": "2xx"}) == 10
    assert v("crawler_request_duration_seconds_count", {"source": "html"}) == 10
    assert v("crawler_requests_in_flight") == 0
    # No database to be down with the embedded store: the gauge is absent, not 0.
    assert v("crawler_database_up") == (1.0 if dsn else None)
    assert v("process_start_time_seconds") > 0
    assert site.hits[f"/page/{PAGES - 1}"] == 2


async def test_failing_site_fails_the_run_and_is_counted(site: Site, tmp_path: Path):
    site.fail = True
    cfg = load_config(write_config(tmp_path, config_text(site, tmp_path)))
    registry = CollectorRegistry()
    [result] = await Service(cfg, registry).once(["html"])
    assert result.status == "failure" and result.failed_pages == PAGES
    assert (
        registry.get_sample_value(
            "crawler_fetch_errors_total", {"source": "html", "error_kind": "http_5xx"}
        )
        == PAGES
    )
    # Every kind's failed pages in the one series the error-budget alerts divide.
    assert registry.get_sample_value("crawler_source_failed_pages_total", {"source": "html"}) == (
        PAGES
    )
    assert (
        registry.get_sample_value(
            "crawler_source_runs_total", {"source": "html", "outcome": "failure"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "crawler_source_last_success_timestamp_seconds", {"source": "html"}
        )
        == 0
    )


def test_cli_once_summary_and_exit_status(site: Site, tmp_path: Path):
    path = write_config(tmp_path, config_text(site, tmp_path))
    ok = run_cli("once", "-c", str(path), "api")
    assert ok.returncode == 0, ok.stderr
    # Not a terminal: JSON log lines only (the summary table and progress are for terminals,
    # tests/integration/test_progress.py).
    logs = [json.loads(line) for line in ok.stdout.splitlines()]
    assert ok.stderr == ""
    finished = [entry for entry in logs if entry["message"] == "source run finished"]
    assert finished[0]["source"] == "api" and finished[0]["records"] == 100
    assert {"time", "level", "logger", "message", "instance"} <= set(finished[0])
    site.fail = True
    bad = run_cli("once", "-c", str(path))
    assert bad.returncode == 1
    failed = [json.loads(line) for line in bad.stdout.splitlines() if '"fetch failed"' in line]
    assert failed and failed[0]["error_kind"] == "http_5xx" and failed[0]["status"] == 500
    assert failed[0]["url"].startswith(site.base)
    assert run_cli("once", "-c", str(path), "nope").returncode == 2


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_run_serves_metrics_health_and_stops_cleanly_on_sigterm(
    site: Site, tmp_path: Path, pg_dsn: str
):
    port = free_port()
    path = write_config(tmp_path, config_text(site, tmp_path, pg_dsn, port=port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "crawler", "run", "-c", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def stored() -> bool:
            try:
                _, body = get(f"{base}/metrics")
            except OSError:
                return False
            return 'crawler_records_stored_total{backend="postgres",source="api"} 100.0' in body

        wait_for(stored, timeout=30)
        assert get(f"{base}/healthz") == (200, "ok\n")
        status, body = get(f"{base}/readyz")
        assert status == 200 and json.loads(body)["ready"] is True
        _, metrics = get(f"{base}/metrics")
        assert 'crawler_source_interval_seconds{source="html"} 3600.0' in metrics
        assert "crawler_source_next_run_timestamp_seconds" in metrics
        assert "crawler_database_up 1.0" in metrics
        assert "crawler_build_info{" in metrics
        check = subprocess.run(
            ["promtool", "check", "metrics"],
            input=metrics,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    messages = [json.loads(line)["message"] for line in out.splitlines() if line.startswith("{")]
    assert (
        messages.index("crawler started")
        < messages.index("crawler stopping")
        < messages.index("crawler stopped")
    )
    assert "Traceback" not in err


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a LISTEN socket on `port`, read from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_metrics_listen_where_configured(site: Site, tmp_path: Path):
    port = free_port()
    path = write_config(tmp_path, config_text(site, tmp_path, port=port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "crawler", "run", "-c", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: listening_addresses(port), timeout=20)
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
