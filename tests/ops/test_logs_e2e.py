"""End to end, the log half: a crawler's error lines reach Slack through Loki's ruler, and every
query of the Logs dashboard answers.

Real processes on 127.0.0.1 only: `crawler run` crawling a test site that answers 500, its JSON
lines written to a file; the real Promtail (v3.6.11) tailing that file with the project's compose
pipeline; the real Loki (v3.7.2) with loki/loki.yaml; its ruler loading loki/rules/ and posting
to a real Alertmanager (Debian's) with the project's alertmanager.yml, which posts to a stand-in
for Slack's webhook. Loki and Promtail are the binaries kept beside the repository
(tests.helpers.shared_tool): without them this test is skipped loudly, and fails on CI.

Rewritten for a test that lasts seconds: ports, addresses and paths; the rule groups' and the
ruler's evaluation interval (1 s instead of 1 m); Alertmanager's group timings (as
tests/ops/test_alerting_e2e.py does). The rules' expressions, thresholds, labels and
annotations, the Promtail stages, Loki's limits, schema and caches are the project's files.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import free_port, require, shared_tool, wait_for
from tests.ops.test_alerting_e2e import (
    Processes,
    SlackStandIn,
    alertmanager_config,
    crawler_config,
    http_ok,
)
from tests.ops.test_dashboards import dashboards, queries
from tests.site import Site

ROOT = Path(__file__).resolve().parents[2]
ALERT = "CrawlerErrorLogsHigh"
HOST = "e2e-pi"
# What Grafana puts in for $__auto: the step of the query, which the test asks for too.
STEP = "15s"


def loki_config(tmp: Path, http: int, grpc: int, am: int) -> Path:
    """loki/loki.yaml with local ports and paths, and the ruler evaluating every second."""
    config = yaml.safe_load((ROOT / "loki" / "loki.yaml").read_text(encoding="utf-8"))
    data = tmp / "data"
    config["server"].update(
        http_listen_address="127.0.0.1",
        http_listen_port=http,
        grpc_listen_address="127.0.0.1",
        grpc_listen_port=grpc,
        log_level="info",
    )
    config["common"]["path_prefix"] = str(data)
    config["common"]["storage"]["filesystem"] = {
        "chunks_directory": str(data / "chunks"),
        "rules_directory": str(data / "rules"),
    }
    config["compactor"]["working_directory"] = str(data / "compactor")
    ruler = config["ruler"]
    ruler["storage"]["local"]["directory"] = str(tmp / "rules")
    ruler["rule_path"] = str(data / "rules-temp")
    ruler["alertmanager_url"] = f"http://127.0.0.1:{am}"
    ruler["evaluation_interval"] = "1s"
    ruler["poll_interval"] = "1s"
    for src in (ROOT / "loki" / "rules").rglob("*.y*ml"):
        rules = yaml.safe_load(src.read_text(encoding="utf-8"))
        for group in rules["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                rule["expr"] = shorter_window(rule["expr"])
        dest = tmp / "rules" / src.relative_to(ROOT / "loki" / "rules")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    path = tmp / "loki.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


SECONDS = {"s": 1, "m": 60, "h": 3600}
WINDOW = 10  # seconds: every rule's window in the test


def shorter_window(expr: str) -> str:
    """The rule over a 10 s window, its threshold scaled with it: the same rate of lines.

    `count_over_time(…[10m]) > 100` (10 error lines a minute) becomes `[10s]) > 1.667`.
    """
    (amount, unit) = re.findall(r"\[(\d+)([smh])\]", expr)[0]
    factor = WINDOW / (int(amount) * SECONDS[unit])
    expr = re.sub(r"\[\d+[smh]\]", f"[{WINDOW}s]", expr)
    m = re.search(r">\s*(\d+(?:\.\d+)?)\s*$", expr)
    assert m, f"no threshold at the end of {expr}"
    return expr[: m.start(1)] + f"{float(m.group(1)) * factor:.3f}"


def promtail_config(tmp: Path, loki: int, log: Path) -> Path:
    """The compose pipeline (its stages and client settings) tailing the crawler's log file."""
    project = yaml.safe_load((ROOT / "promtail" / "promtail-compose.yaml").read_text())
    (scrape,) = project["scrape_configs"]
    client = dict(project["clients"][0], url=f"http://127.0.0.1:{loki}/loki/api/v1/push")
    config = {
        "server": {
            "http_listen_address": "127.0.0.1",
            "http_listen_port": 0,
            "grpc_listen_port": 0,
        },
        "positions": {"filename": str(tmp / "positions.yaml"), "sync_period": "1s"},
        "clients": [client],
        "scrape_configs": [
            {
                "job_name": "crawler",
                # The labels the compose relabelling gives the crawler's container.
                "static_configs": [
                    {
                        "targets": ["localhost"],
                        "labels": {"job": "crawler", "host": HOST, "__path__": str(log)},
                    }
                ],
                "pipeline_stages": scrape["pipeline_stages"],
            }
        ],
    }
    path = tmp / "promtail.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def loki_get(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


def grafana_regex(values: list[str]) -> str:
    """A multi-value variable as Grafana formats it into a regex matcher: (a|b), escaped."""
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def logs_dashboard_answers(base: str) -> list[str]:
    """Every query of the Logs dashboard, its variables resolved as Grafana would; the empty ones."""
    dash = dashboards()["logs.json"]
    values: dict[str, str] = {}
    missing = []
    end = time.time_ns()
    window = {"start": str(end - 10 * 60 * 10**9), "end": str(end)}
    for v in dash["templating"]["list"]:
        q = v["query"]
        found = loki_get(
            base, f"/loki/api/v1/label/{q['label']}/values", query=q["stream"], **window
        )
        if not found:
            missing.append(f"variable {v['name']}: no values for {q['stream']}")
        values[v["name"]] = grafana_regex(found or ["none"])
    for title, expr, _ in queries(dash, "loki"):
        text = expr.replace("$__auto", STEP)
        for name, value in values.items():
            text = text.replace(f"${name}", value)
        data = loki_get(
            base, "/loki/api/v1/query_range", query=text, step=STEP, limit="50", **window
        )
        if not data["result"]:
            missing.append(f"{title}: {text}")
    return missing


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.stop()
    for name in procs.procs:  # shown by pytest only when the test fails
        print(f"--- {name} log ---\n{procs.log(name)}")


def slack_alert(slack: SlackStandIn) -> dict[str, Any] | None:
    for a in slack.attachments():
        if a.get("title", "").startswith("[FIRING") and ALERT in a["title"]:
            return a
    return None


@pytest.mark.timeout(180)
def test_error_lines_alert_slack_and_fill_the_logs_dashboard(
    tmp_path: Path, site: Site, slack: SlackStandIn, processes: Processes
) -> None:
    loki_bin, promtail_bin = shared_tool("loki"), shared_tool("promtail")
    loki_http, loki_grpc, am_port, crawler_port = free_port(), free_port(), free_port(), free_port()
    for sub in ("loki", "promtail", "alertmanager"):
        (tmp_path / sub).mkdir()
    loki_yaml = loki_config(tmp_path / "loki", loki_http, loki_grpc, am_port)
    crawler_log = tmp_path / "crawler.log"  # Processes writes each process' output to NAME.log
    promtail_yaml = promtail_config(tmp_path / "promtail", loki_http, crawler_log)
    am_yaml = alertmanager_config(tmp_path / "alertmanager", slack.url)
    crawler_yaml = crawler_config(tmp_path, site, crawler_port)

    site.fail = True  # every page answers 500: a failed run (one ERROR line) every second
    processes.start(
        "alertmanager",
        [
            require("prometheus-alertmanager"),
            f"--config.file={am_yaml}",
            f"--storage.path={tmp_path / 'alertmanager' / 'data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
    )
    # As compose runs it: ${VAR} in loki.yaml expanded, the alert links from .env.
    links = {
        "RUNBOOK_BASE_URL": "https://nas.test:3000/docs/runbooks.md",
        "GRAFANA_URL": "https://nas.test:3000",
    }
    processes.start(
        "loki",
        [loki_bin, f"-config.file={loki_yaml}", "-config.expand-env=true"],
        env={**os.environ, **links},
    )
    loki = f"http://127.0.0.1:{loki_http}"
    wait_for(
        lambda: (
            processes.check_alive()
            or (http_ok(f"{loki}/ready") and http_ok(f"http://127.0.0.1:{am_port}/-/ready"))
        ),
        timeout=60,
        interval=0.3,
    )
    crawler_bin = ROOT / ".venv" / "bin" / "crawler"
    assert crawler_bin.exists(), f"{crawler_bin} missing: run scripts/test to install"
    processes.start(
        "crawler",
        [str(crawler_bin), "run", "-c", str(crawler_yaml)],
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    # Promtail's own ports are picked by the kernel: only once the crawler has bound its port.
    wait_for(
        lambda: processes.check_alive() or http_ok(f"http://127.0.0.1:{crawler_port}/healthz"),
        timeout=30,
        interval=0.2,
    )
    # As compose runs it: -config.expand-env=true, the push account's password from a file
    # (Loki without the proxy ignores it), no CA file (plain HTTP on 127.0.0.1).
    password = tmp_path / "promtail" / "loki_push_password"
    password.write_text("push-password-for-tests\n")
    processes.start(
        "promtail",
        [promtail_bin, f"-config.file={promtail_yaml}", "-config.expand-env=true"],
        env={"PATH": os.environ.get("PATH", ""), "LOKI_PASSWORD_FILE": str(password)},
    )

    # The ruler loaded the project's rules (tenant `fake`, the single-tenant name).
    def rules_loaded() -> bool:
        processes.check_alive()
        try:
            groups = loki_get(loki, "/prometheus/api/v1/rules")["groups"]
        except OSError:
            return False
        return any(r["name"] == ALERT for g in groups for r in g["rules"])

    wait_for(rules_loaded, timeout=30, interval=0.5)

    # The crawler's ERROR lines reach Loki with the labels the pipeline promotes.
    def errors_in_loki() -> bool:
        processes.check_alive()
        data = loki_get(
            loki,
            "/loki/api/v1/query",
            query=f'sum(count_over_time({{job="crawler", host="{HOST}", level="ERROR", source="quotes"}}[1m]))',
        )
        return bool(data["result"]) and float(data["result"][0]["value"][1]) > 0

    wait_for(errors_in_loki, timeout=45, interval=0.5)

    firing = wait_for(
        lambda: processes.check_alive() or slack_alert(slack), timeout=60, interval=0.5
    )
    assert isinstance(firing, dict)
    assert firing["title"].startswith(f"[FIRING:1] {ALERT} (warning)"), firing["title"]
    assert f"Crawler on {HOST} logged" in firing["text"]
    assert "source: `quotes`" in firing["text"] and f"host: `{HOST}`" in firing["text"]
    assert f"<{links['RUNBOOK_BASE_URL']}#crawlererrorlogshigh|Runbook>" in firing["text"]
    assert f"<{links['GRAFANA_URL']}/d/crawler-logs?var-source=quotes|Grafana>" in firing["text"]

    # Alertmanager holds the alert with an absolute link back (the ruler's external_url).
    with urllib.request.urlopen(f"http://127.0.0.1:{am_port}/api/v2/alerts", timeout=5) as resp:
        alerts = [a for a in json.load(resp) if a["labels"]["alertname"] == ALERT]
    assert alerts, "the alert is not in Alertmanager"
    assert alerts[0]["generatorURL"].startswith(f"{links['GRAFANA_URL']}/d/crawler-logs/"), alerts[
        0
    ]

    # Every query of the Logs dashboard has data: errors, warnings, kinds, the whole stack.
    deadline = time.monotonic() + 30
    missing = logs_dashboard_answers(loki)
    while missing and time.monotonic() < deadline:
        time.sleep(1)
        missing = logs_dashboard_answers(loki)
    assert not missing, "Logs dashboard queries without data:\n" + "\n".join(missing)
    assert not loki_get(loki, "/loki/api/v1/query_range", query='{job="no-such-job"}', limit="5")[
        "result"
    ]
