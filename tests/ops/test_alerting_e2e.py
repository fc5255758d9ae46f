"""End to end: a failing site reaches Slack as an alert, and its recovery as a resolved message.

Real processes on 127.0.0.1 only: the crawler (`crawler run`), Prometheus and Alertmanager
(the Debian packages' binaries) with the project's own configuration files, and two aiohttp
servers on threads: the crawled site (tests/site.py), and a stand-in for Slack's incoming
webhook that records every payload Alertmanager posts.

Only what must change for a test that lasts seconds instead of minutes is rewritten: addresses
and ports, scrape and evaluation every second, `for:` and `keep_firing_for:` shortened, the
error budget's windows (5 m, 30 m, 1 h, 6 h) made 10, 15, 20 and 40 seconds, Alertmanager's
group timings made 1 second, the webhook URL file, and the template path. Everything else (the rules' expressions, thresholds, annotations, routes, inhibitions and
the Slack template) is the files the stack runs.

A second test posts alerts straight to a real Alertmanager's API and reads back which ones
the project's inhibit rules silenced.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.helpers import for_prometheus_2_42, free_port, require, wait_for
from tests.site import Site

ROOT = Path(__file__).resolve().parents[2]
ALERT = "CrawlerSourceErrorBudgetBurn"
# The alert links' settings (.env's RUNBOOK_BASE_URL and GRAFANA_URL), as compose passes them.
LINKS = {
    "RUNBOOK_BASE_URL": "https://nas.test:3000/docs/runbooks.md",
    "GRAFANA_URL": "https://nas.test:3000",
}
RUNBOOK = LINKS["RUNBOOK_BASE_URL"] + "#crawlersourceerrorbudgetburn"
SHORT_FOR = "2s"
# Range windows in the rules, scaled for a crawl every second (2 pages a run): each keeps the
# order of the real ones, and the shortest still holds several scrapes.
SHORT_WINDOWS = {"5m": "10s", "15m": "12s", "30m": "15s", "1h": "20s", "6h": "40s"}


class SlackStandIn:
    """Slack's incoming webhook, played by an aiohttp route that keeps every JSON payload."""

    def __init__(self) -> None:
        self.server = Site()
        self.payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.server.app.router.add_post("/slack", self._post)

    async def _post(self, request: web.Request) -> web.Response:
        payload = await request.json()
        with self._lock:
            self.payloads.append(payload)
        return web.Response(text="ok")

    @property
    def url(self) -> str:
        return f"{self.server.base}/slack"

    def attachments(self) -> list[dict[str, Any]]:
        with self._lock:
            return [a for p in self.payloads for a in p.get("attachments", [])]

    def find(self, title_prefix: str) -> dict[str, Any] | None:
        for a in self.attachments():
            if a.get("title", "").startswith(title_prefix) and ALERT in a["title"]:
                return a
        return None


class Processes:
    """Child processes with their output in files; all stopped, logs shown on failure."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        with (self.workdir / f"{name}.log").open("wb") as log:
            self.procs[name] = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env
            )

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        # A short grace: the tests are done with them, and Loki's graceful stop (flushing its
        # ingester) took 10 s of every log test's teardown.
        for proc in self.procs.values():
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def prometheus_config(tmp: Path, crawler: int, prom: int, am: int) -> Path:
    """The project's prometheus.yml and rules, rewritten for a seconds-long test."""
    config = for_prometheus_2_42(
        yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    )
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{am}"]}]
    local = {"prometheus": f"127.0.0.1:{prom}", "alertmanager": f"127.0.0.1:{am}"}
    jobs = []
    for job in config["scrape_configs"]:
        if job["job_name"] == "crawler":
            jobs.append(job)  # keeps its file_sd: the test writes targets/crawler.yml
            if "basic_auth" in job:
                # The Docker secret's path, here a file of the test's own; the crawler
                # under test asks for no password and ignores the one it is sent.
                (tmp / "pi_metrics_password").write_text("pw-for-tests")
                job["basic_auth"]["password_file"] = str(tmp / "pi_metrics_password")
        elif job["job_name"] in local:
            job["static_configs"] = [{"targets": [local[job["job_name"]]]}]
            jobs.append(job)
        # node, postgres, pipeline and loki do not run here; scraping them would only fail.
    config["scrape_configs"] = jobs
    (tmp / "targets").mkdir()
    (tmp / "targets" / "crawler.yml").write_text(
        yaml.safe_dump([{"targets": [f"127.0.0.1:{crawler}"]}])
    )
    (tmp / "rules").mkdir()
    for src in sorted((ROOT / "prometheus" / "rules").glob("*.yml")):
        rules = yaml.safe_load(src.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                rule["expr"] = re.sub(
                    r"\[(\d+[smhd])\]",
                    lambda m: f"[{SHORT_WINDOWS.get(m[1], m[1])}]",
                    rule["expr"],
                )
                if "alert" in rule and rule["for"] != "0m":
                    rule["for"] = SHORT_FOR
                if "keep_firing_for" in rule:
                    rule["keep_firing_for"] = SHORT_FOR
        (tmp / "rules" / src.name).write_text(yaml.safe_dump(rules, sort_keys=False))
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def alertmanager_config(tmp: Path, webhook_url: str) -> Path:
    """The project's alertmanager.yml with the webhook file, templates and timings for a test."""
    config = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    url_file = tmp / "slack_webhook_url"
    url_file.write_text(webhook_url + "\n")
    config["global"]["slack_api_url_file"] = str(url_file)
    config["templates"] = [str(ROOT / "alertmanager" / "templates" / "*.tmpl")]
    for route in [config["route"], *config["route"]["routes"]]:
        route.update(group_wait="1s", group_interval="1s")
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def crawler_config(tmp: Path, site: Site, port: int) -> Path:
    config = {
        "instance": "e2e",
        "log_level": "INFO",
        "state_dir": str(tmp / "var"),
        "metrics": {"listen": f"127.0.0.1:{port}"},
        "fetch": {
            "politeness_delay": "0s",
            "robots": False,
            "connect_timeout": "1s",
            "read_timeout": "2s",
            "total_timeout": "3s",
            # One attempt and a breaker that never opens: every page fetch that meets the
            # failing site counts as an error at once.
            "retry": {"attempts": 1},
            "circuit": {"window": 100000, "min_calls": 100000},
        },
        "sources": [
            {
                "name": "quotes",
                "every": "1s",
                "urls": [f"{site.base}/page/{{1..2}}"],
                "parser": "html",
                "items": "div.quote",
                "fields": {"text": "span.text::text", "author": "small.author::text"},
                "key": ["text", "author"],
            }
        ],
    }
    path = tmp / "crawler.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.stop()
    # Shown by pytest only when the test fails.
    for name in procs.procs:
        print(f"--- {name} log ---\n{procs.log(name)}")


@pytest.mark.timeout(120)
def test_failing_site_alerts_slack_then_resolves(
    tmp_path: Path, site: Site, slack: SlackStandIn, processes: Processes
) -> None:
    crawler_port, prom_port, am_port = free_port(), free_port(), free_port()
    prom_dir, am_dir = tmp_path / "prometheus", tmp_path / "alertmanager"
    prom_dir.mkdir()
    am_dir.mkdir()
    prom_config = prometheus_config(prom_dir, crawler_port, prom_port, am_port)
    am_config = alertmanager_config(am_dir, slack.url)
    crawler_yaml = crawler_config(tmp_path, site, crawler_port)

    # The project's tools accept the rewritten files too.
    for args in (
        [require("promtool"), "check", "config", str(prom_config)],
        [require("amtool"), "check-config", str(am_config)],
    ):
        proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    processes.start(
        "alertmanager",
        [
            require("prometheus-alertmanager"),
            f"--config.file={am_config}",
            f"--storage.path={am_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
    )
    processes.start(
        "prometheus",
        [
            require("prometheus"),
            f"--config.file={prom_config}",
            f"--storage.tsdb.path={prom_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            # Prometheus 3 (compose) expands ${VAR} in external_labels by itself.
            "--enable-feature=expand-external-labels",
        ],
        env={**os.environ, **LINKS},
    )
    crawler_bin = ROOT / ".venv" / "bin" / "crawler"
    assert crawler_bin.exists(), f"{crawler_bin} missing: run scripts/test to install"
    processes.start(
        "crawler",
        [str(crawler_bin), "run", "-c", str(crawler_yaml)],
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )

    def ready() -> bool:
        processes.check_alive()
        return (
            http_ok(f"http://127.0.0.1:{am_port}/-/ready")
            and http_ok(f"http://127.0.0.1:{prom_port}/-/ready")
            and http_ok(f"http://127.0.0.1:{crawler_port}/healthz")
        )

    wait_for(ready, timeout=20, interval=0.2)
    # The crawl works and Prometheus sees it before anything breaks.
    wait_for(lambda: site.hits["/page/1"] >= 2, timeout=10)
    assert slack.find("[FIRING") is None

    # Every page fails: the budget burns at 20x, past the fast pair's 14.4x (critical).
    site.fail = True
    firing = wait_for(
        lambda: processes.check_alive() or slack.find(f"[FIRING:1] {ALERT} (critical)"),
        timeout=40,
    )
    assert isinstance(firing, dict)
    assert re.search(
        r"\*Source quotes: \d+(\.\d+)?% of page fetches failed in the last hour\*", firing["text"]
    )
    assert "source: `quotes`" in firing["text"]
    assert f"<{RUNBOOK}|Runbook>" in firing["text"]
    grafana = LINKS["GRAFANA_URL"]
    assert f"<{grafana}/d/crawler-overview?var-source=quotes|Grafana>" in firing["text"]
    assert firing["color"] == "danger"

    site.fail = False
    resolved = wait_for(
        lambda: processes.check_alive() or slack.find(f"[RESOLVED] {ALERT} (critical)"),
        timeout=40,
    )
    assert isinstance(resolved, dict)
    assert ":white_check_mark: RESOLVED *Source quotes:" in resolved["text"]
    # The resolved message says how long the alert lasted, rendered by a real Alertmanager.
    assert re.search(r", lasted (under a minute|\d+h(\d+m)?|\d+m)\n", resolved["text"])
    assert f"<{RUNBOOK}|Runbook>" in resolved["text"]
    assert resolved["color"] == "good"
    # Every payload went out in the Slack receiver's format, and the always-firing
    # watchdog went to its own receiver, not to Slack.
    assert all("attachments" in p for p in slack.payloads)
    assert not [a for a in slack.attachments() if "CrawlerWatchdog" in a["title"]]


# (alertname, job, instance, severity, source, inhibited?) posted together to one Alertmanager.
INHIBITION_CASES = [
    # The crawler target is down: its other alerts are noise ...
    ("CrawlerTargetDown", "crawler", "pi:9410", "critical", "", False),
    ("CrawlerNotReady", "crawler", "pi:9410", "warning", "", True),
    # ... but another crawler's are not.
    ("CrawlerNotReady", "crawler", "pi2:9410", "warning", "", False),
    # Critical silences the warning of the same alert and instance only.
    ("CrawlerSpoolNearCap", "crawler", "pi3:9410", "critical", "", False),
    ("CrawlerSpoolNearCap", "crawler", "pi3:9410", "warning", "", True),
    ("CrawlerSpoolNearCap", "crawler", "pi4:9410", "warning", "", False),
    # PostgreSQL down explains the crawler not reaching it.
    ("CrawlerPostgresDown", "postgres", "pg:9187", "critical", "", False),
    ("CrawlerDatabaseUnreachable", "crawler", "pi5:9410", "warning", "", True),
    # A source burning its budget (fast, critical) silences its slow pair and its being
    # overdue; another source's overdue alert still goes out.
    ("CrawlerSourceErrorBudgetBurn", "crawler", "", "critical", "news", False),
    ("CrawlerSourceErrorBudgetBurn", "crawler", "", "warning", "news", True),
    ("CrawlerSourceOverdue", "crawler", "", "warning", "news", True),
    ("CrawlerSourceOverdue", "crawler", "", "warning", "shop", False),
]


@pytest.mark.timeout(60)
def test_alertmanager_inhibitions(
    tmp_path: Path, slack: SlackStandIn, processes: Processes
) -> None:
    """The project's inhibit rules, applied by a real Alertmanager to alerts posted to its API."""
    port = free_port()
    config = alertmanager_config(tmp_path, slack.url)
    processes.start(
        "alertmanager",
        [
            require("prometheus-alertmanager"),
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
    )
    api = f"http://127.0.0.1:{port}/api/v2/alerts"
    wait_for(lambda: processes.check_alive() or http_ok(f"http://127.0.0.1:{port}/-/ready"))

    def labels(name: str, job: str, instance: str, severity: str, source: str) -> dict[str, str]:
        given = {"job": job, "instance": instance, "severity": severity, "source": source}
        return {"alertname": name} | {k: v for k, v in given.items() if v}

    alerts = [
        {"labels": labels(*case[:5]), "annotations": {"summary": case[0]}}
        for case in INHIBITION_CASES
    ]
    request = urllib.request.Request(
        api, data=json.dumps(alerts).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200
    expected = {(n, i, sev, src): inhibited for n, _, i, sev, src, inhibited in INHIBITION_CASES}

    def inhibited() -> dict[tuple[str, str, str, str], bool]:
        with urllib.request.urlopen(api, timeout=5) as resp:
            got = json.load(resp)
        return {
            (
                a["labels"]["alertname"],
                a["labels"].get("instance", ""),
                a["labels"]["severity"],
                a["labels"].get("source", ""),
            ): bool(a["status"]["inhibitedBy"])
            for a in got
        }

    wait_for(lambda: inhibited() == expected, timeout=10, interval=0.2)
