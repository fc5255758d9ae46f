"""`crawler status` against a running crawler and a stopped one, with PostgreSQL and with the
embedded store; `/status` behind the same password as /metrics."""

from __future__ import annotations

import base64
import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from tests.crawler_proc import CrawlerProcess, run_cli
from tests.helpers import free_port, wait_for, write_config
from tests.site import Site, quote_source

PASSWORD = "status-pw-for-tests"


def status(config: Path) -> tuple[int, dict[str, Any]]:
    result = run_cli("status", "-c", str(config), "--json")
    assert result.returncode in (0, 1, 3), result.stderr
    return result.returncode, json.loads(result.stdout)


def get(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_status_of_a_running_then_a_stopped_crawler(
    backend: str, tmp_path: Path, site: Site, request: pytest.FixtureRequest
):
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgres" else None
    users = tmp_path / "web-config.yml"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    users.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    port = free_port()
    good = quote_source("good", [f"{site.base}/page/0"])
    bad = quote_source("bad", [f"{site.base}/missing"])

    def write(*sources: dict[str, Any]) -> Path:
        return write_config(
            tmp_path,
            metrics={"listen": f"127.0.0.1:{port}", "basic_auth": str(users)},
            storage={"dsn": dsn} if dsn else {},
            fetch={"retry": {"attempts": 1}},
            sources=list(sources),
        )

    config = write(good, bad)
    crawler = CrawlerProcess(config, tmp_path / "crawler.log")
    try:

        def both_ran() -> dict[str, Any] | None:
            code, doc = status(config)
            ran = code != 3 and all(s["last_run"] for s in doc["sources"].values())
            return doc if ran else None

        wait_for(both_ran, timeout=60, interval=0.3)
        code, doc = status(config)
        assert code == 1  # `bad` failed
        assert doc["crawler"]["running"] is True and "note" not in doc
        assert set(doc["sources"]) == {"good", "bad"}
        g, b = doc["sources"]["good"], doc["sources"]["bad"]
        assert g["schedule"] == "every 1h"
        assert g["last_run"]["status"] == "success" and g["last_run"]["records"] == 20
        # A first run: every record new (issue 27).
        assert (g["last_run"]["records_new"], g["last_run"]["records_changed"]) == (20, 0)
        assert g["failing_since"] is None
        assert b["last_run"]["status"] == "failure" and b["last_run"]["error_kind"] == "http_4xx"
        assert b["failing_since"] == b["last_run"]["started_at"]
        assert g["next_run"] > time.time() + 3000
        assert g["lease"] is (True if backend == "postgres" else None)
        assert doc["quarantine"] == 0
        assert doc["database"] == {"backend": backend, "reachable": True}
        assert (doc["spool"] is not None) == (backend == "postgres")
        # The same password as /metrics; `crawler status` used the state directory's token.
        assert get(f"http://127.0.0.1:{port}/status") == 401
        assert get(f"http://127.0.0.1:{port}/status", f"prometheus:{PASSWORD}") == 200
        table = run_cli("status", "-c", str(config))
        assert table.returncode == 1
        lines = table.stdout.splitlines()
        assert lines[0].split()[:2] == ["SOURCE", "SCHEDULE"] and "NEXT RUN" in lines[0]
        assert any(line.startswith("good ") and "success" in line for line in lines)
        assert any(line.startswith("good ") and "20 (20 new, 0 changed)" in line for line in lines)
        assert any(line.startswith("bad ") and "failure" in line for line in lines)

        # Without the failing source, every last run succeeded: exit 0.
        config = write(good)
        crawler.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: set(status(config)[1]["sources"]) == {"good"}, timeout=30)
        assert status(config)[0] == 0
    finally:
        assert crawler.stop() == 0

    # Stopped: the store's last runs, no next run, exit 3, and it says so.
    config = write(good, bad)
    code, doc = status(config)
    assert code == 3
    assert doc["crawler"]["running"] is False
    assert "no crawler is running" in doc["note"]
    g, b = doc["sources"]["good"], doc["sources"]["bad"]
    assert g["last_run"]["status"] == "success" and g["last_run"]["records"] == 20
    assert (g["last_run"]["records_new"], g["last_run"]["records_changed"]) == (20, 0)
    assert g["next_run"] is None and g["lease"] is None
    assert b["last_run"]["status"] == "failure" and b["failing_since"] is not None
    table = run_cli("status", "-c", str(config))
    assert table.returncode == 3
    assert "20 (20 new, 0 changed)" in table.stdout
    assert "no crawler is running" in table.stdout and "NEXT RUN" not in table.stdout


def test_status_and_reload_without_a_crawler_or_with_a_broken_file(tmp_path: Path, site: Site):
    config = write_config(tmp_path, sources=[quote_source("s", [f"{site.base}/page/0"])])
    code, doc = status(config)
    assert code == 3 and doc["sources"]["s"]["last_run"] is None
    result = run_cli("reload", "-c", str(config))
    assert result.returncode == 3 and "no crawler is running" in result.stderr
    broken = write_config(tmp_path, "broken.yaml", sources=[{"name": "s", "every": "soon"}])
    result = run_cli("reload", "-c", str(broken))
    assert result.returncode == 2 and "broken.yaml:" in result.stderr


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_status_shows_the_last_runs_new_and_changed_records(
    backend: str, tmp_path: Path, site: Site, request: pytest.FixtureRequest
):
    """Issue 27: a first run's records are all new; a re-crawl of unchanged pages is neither;
    a run after the site changed its text counts them changed."""
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgres" else None
    config = write_config(
        tmp_path,
        storage={"dsn": dsn} if dsn else {},
        sources=[
            quote_source(
                "q",
                [f"{site.base}/page/0", f"{site.base}/page/1"],
                fields={"id": "xpath:./@data-id", "text": "span.text::text"},
                key=["id"],  # a quote keeps its key when its text changes
            )
        ],
    )

    def crawl_then_status() -> tuple[int, int, int]:
        once = run_cli("once", "-c", str(config))
        assert once.returncode == 0, once.stderr
        code, doc = status(config)
        assert code == 3  # no crawler running: read from the store's crawler_jobs
        last = doc["sources"]["q"]["last_run"]
        return last["records"], last["records_new"], last["records_changed"]

    assert crawl_then_status() == (40, 40, 0)
    _, new, changed = crawl_then_status()
    assert (new, changed) == (0, 0)  # unchanged (or not modified: then no records at all)
    site.version += 1
    assert crawl_then_status() == (40, 0, 40)
    assert "40 (0 new, 40 changed)" in run_cli("status", "-c", str(config)).stdout
