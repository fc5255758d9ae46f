"""The alerting configuration is code, checked by the tools that will run it.

promtool checks prometheus.yml and every rule file (the Loki rules too: they keep to the
PromQL-compatible part of LogQL) and runs the rule unit tests in prometheus/tests/; amtool
checks alertmanager.yml, resolves the route of every severity and renders the Slack template.
Around the tools, these tests hold the house rules: every alert has `for`, a severity, a
summary, a description, a runbook section, and unit tests that show it firing and silent.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import for_prometheus_2_42, require

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "prometheus"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
LOKI_RULES = sorted((ROOT / "loki" / "rules" / "fake").glob("*.yml"))
UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
ALERTMANAGER = ROOT / "alertmanager"
AM_CONFIG = ALERTMANAGER / "alertmanager.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
# Rules link runbooks through the external label Prometheus gets from RUNBOOK_BASE_URL.
RUNBOOK_BASE = "{{ $externalLabels.runbook_base_url }}#"
# What alerts carry once Prometheus or Loki expanded RUNBOOK_BASE_URL and GRAFANA_URL.
RUNBOOK = "https://nas.test:3000/docs/runbooks.md#"
GRAFANA = "https://nas.test:3000"
SEVERITIES = {"critical", "warning", "info"}
# Fires by design at every evaluation: there is no input on which it is silent.
ALWAYS_FIRING = {"CrawlerWatchdog"}
# Expressions without labels (vector(1), absent of a bare name): nothing to template.
UNLABELLED = {"CrawlerWatchdog", "CrawlerAlertThresholdsMissing"}


def run(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def alert_rules(files: list[Path]) -> list[dict[str, Any]]:
    rules = []
    for f in files:
        for group in yaml.safe_load(f.read_text())["groups"]:
            rules += [r for r in group["rules"] if "alert" in r]
    return rules


ALERTS = alert_rules(RULES) + alert_rules(LOKI_RULES)
ALERT_NAMES = sorted({r["alert"] for r in ALERTS})


def am_config_for_test(tmp_path: Path) -> Path:
    """alertmanager.yml with the templates read from the repository instead of /etc."""
    text = AM_CONFIG.read_text().replace(
        "/etc/alertmanager/templates/", f"{ALERTMANAGER / 'templates'}/"
    )
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    return path


# --- Prometheus --------------------------------------------------------------------------


def test_promtool_check_config_loads_every_rule_file(tmp_path: Path) -> None:
    # A copy without what promtool 2.42 predates, its relative paths made absolute.
    config = for_prometheus_2_42(yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text()))
    config["rule_files"] = [str(PROMETHEUS / f) for f in config["rule_files"]]
    for job in config["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            sd["files"] = [str(PROMETHEUS / f) for f in sd["files"]]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = run(require("promtool"), "check", "config", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(RULES)} rule files found" in proc.stdout


def test_promtool_check_rules() -> None:
    assert RULES and LOKI_RULES
    proc = run(require("promtool"), "check", "rules", *RULES, *LOKI_RULES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(RULES) + len(LOKI_RULES)


@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(unit_test: Path) -> None:
    # One file at a time: a failure names its file, and the hours-long sparse-source files
    # (budget, replay) get a timeout of their own on a loaded machine.
    proc = run(require("promtool"), "test", "rules", unit_test, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == 1


def test_replay_file_is_what_its_generator_writes() -> None:
    """replay.test.yml is generated (a week of minute samples); review happens in replay.py."""
    spec = importlib.util.spec_from_file_location("replay", PROMETHEUS / "tests" / "replay.py")
    assert spec and spec.loader
    replay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay)
    expected = replay.render(replay.Week(), replay.EXPECTED)
    assert (PROMETHEUS / "tests" / "replay.test.yml").read_text() == expected, (
        "run python3 prometheus/tests/replay.py"
    )


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for f in UNIT_TESTS:
        for case in yaml.safe_load(f.read_text())["tests"]:
            for t in case.get("alert_rule_test", []):
                (fires if t.get("exp_alerts") else silent).add(t["alertname"])
    assert set(ALERT_NAMES) - fires == set(), "alerts without a firing test case"
    assert set(ALERT_NAMES) - ALWAYS_FIRING - silent == set(), "alerts without a silent test case"
    assert fires | silent <= set(ALERT_NAMES), "tests of alerts that do not exist"


@pytest.mark.parametrize("rule", ALERTS, ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_alert_carries_for_severity_summary_description_runbook(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"Crawler(?:[A-Z][a-z0-9]*)+", name), "CamelCase with the Crawler prefix"
    assert "for" in rule, "every alert states its `for`, even 0m"
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    if name not in UNLABELLED:
        assert "{{" in annotations["description"], "description is templated"
    assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower()


def test_every_alert_has_a_runbook_section_and_a_table_row() -> None:
    text = RUNBOOKS.read_text()
    sections = set(re.findall(r"^## (\w+)$", text, re.MULTILINE))
    rows = set(re.findall(r"^\| (Crawler\w+)", text, re.MULTILINE))
    assert set(ALERT_NAMES) <= sections
    assert set(ALERT_NAMES) == rows


def test_alert_table_states_smallest_outage_and_longest_blip() -> None:
    """Issue 19: for each alert, the smallest outage that fires it and the longest blip that
    does not, so that a reader can tell noise from news before the first message arrives."""
    lines = RUNBOOKS.read_text().splitlines()
    header = "| alert | fires when | for | severity | protects against | smallest outage that fires it | longest blip that does not |"
    assert header in lines
    start = lines.index(header) + 2  # after the header and its --- line
    rows = lines[start : lines.index("", start)]
    assert {row.split()[1] for row in rows} == set(ALERT_NAMES)
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert len(cells) == 7 and all(cells), f"7 filled cells: {row}"


def test_thresholds_are_defined_once_and_all_used() -> None:
    doc = yaml.safe_load((PROMETHEUS / "rules" / "thresholds.yml").read_text())
    defined = [r["labels"]["threshold"] for g in doc["groups"] for r in g["rules"]]
    assert len(defined) == len(set(defined)), "a threshold defined twice"
    used: set[str] = set()
    for f in RULES:
        if f.name != "thresholds.yml":
            used |= set(re.findall(r'alerting:threshold\{threshold="(\w+)"\}', f.read_text()))
    assert used == set(defined)


def test_rules_use_only_metrics_of_the_contract() -> None:
    """A renamed metric would leave its alert silently unable to fire: names must match."""
    crawler = (ROOT / "docs" / "metrics.md").read_text()
    pipeline = (ROOT / "exporters" / "pipeline.py").read_text()
    pi = (ROOT / "docs" / "pi.md").read_text()
    used: set[str] = set()
    for f in RULES:
        for group in yaml.safe_load(f.read_text())["groups"]:
            for rule in group["rules"]:
                expr = re.sub(r'"[^"]*"', '""', rule["expr"])  # not label values
                used |= set(re.findall(r"(?<![:\w])(?:crawler|rpi)_\w+(?![:\w])", expr))
    assert used, "the pattern found no metric at all"
    for name in sorted(used):
        if name.startswith("crawler_data_"):
            assert f'"{name}"' in pipeline, name
        elif name.startswith("rpi_"):
            assert f"`{name}" in pi, name
        else:
            assert f"| `{name}` |" in crawler, name


def test_scrape_jobs_and_pi_addresses_in_target_files() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {
        "crawler",
        "node",
        "postgres",
        "pipeline",
        "prometheus",
        "alertmanager",
        "loki",
    }
    # The Pi's two addresses are in target files, one place the user edits.
    # node-exporter runs in the host's network namespace: Prometheus reaches it on the host.
    for job, target in (("crawler", "crawler:9410"), ("node", "host.docker.internal:9100")):
        (sd,) = jobs[job]["file_sd_configs"]
        (path,) = sd["files"]
        groups = yaml.safe_load((PROMETHEUS / path).read_text())
        assert [t for g in groups for t in g["targets"]] == [target]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"
    ]


# --- Alertmanager ------------------------------------------------------------------------


def render_template(tmp_path: Path, data: dict[str, Any], text: str) -> Any:
    """amtool's rendering of `text` with the project's templates over Alertmanager's `data`."""
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    return run(
        require("amtool"),
        "template",
        "render",
        f"--template.glob={ALERTMANAGER / 'templates' / '*.tmpl'}",
        f"--template.data={data_file}",
        f"--template.text={text}",
    )


def test_amtool_check_config(tmp_path: Path) -> None:
    amtool = require("amtool")
    proc = run(amtool, "check-config", AM_CONFIG)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Again with the templates where amtool can find and parse them.
    proc = run(amtool, "check-config", am_config_for_test(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 templates" in proc.stdout


def test_slack_url_comes_from_a_file_and_resolved_messages_are_sent() -> None:
    config = yaml.safe_load(AM_CONFIG.read_text())
    assert config["global"]["slack_api_url_file"] == "/run/secrets/slack_webhook_url"
    assert "hooks.slack.com" not in AM_CONFIG.read_text()
    slack = [c for r in config["receivers"] for c in r.get("slack_configs", [])]
    assert len(slack) == 3
    assert all(c["send_resolved"] is True and "api_url" not in c for c in slack)


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical"], "slack-critical"),
        (["severity=warning"], "slack-warning"),
        (["severity=info"], "slack-info"),
        (["alertname=CrawlerWatchdog", "severity=info"], "heartbeat"),
        (["alertname=SomethingNew"], "slack-warning"),
    ],
)
def test_amtool_routes_each_severity(labels: list[str], receiver: str) -> None:
    proc = run(
        require("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={AM_CONFIG}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == receiver


def test_inhibitions_cover_target_down_and_critical_over_warning() -> None:
    rules = yaml.safe_load(AM_CONFIG.read_text())["inhibit_rules"]
    by_source = {tuple(r["source_matchers"]): r for r in rules}
    down = by_source[('alertname="CrawlerTargetDown"',)]
    assert down["equal"] == ["job", "instance"]
    crit = by_source[('severity="critical"',)]
    assert crit["target_matchers"] == ['severity="warning"']
    assert "alertname" in crit["equal"]


def test_grouping_by_alert_and_source_keeps_a_bad_hour_to_a_few_messages() -> None:
    route = yaml.safe_load(AM_CONFIG.read_text())["route"]
    assert route["group_by"] == ["alertname", "source"]
    minutes = {"s": 1 / 60, "m": 1, "h": 60}

    def as_minutes(duration: str) -> float:
        return float(duration[:-1]) * minutes[duration[-1]]

    for sub in route["routes"]:
        if sub["receiver"] == "heartbeat":
            continue  # a dead man's switch, not Slack
        group_interval = as_minutes(sub.get("group_interval", route["group_interval"]))
        repeat = as_minutes(sub.get("repeat_interval", route["repeat_interval"]))
        # In one hour a group sends its first message and at most one update per
        # group_interval (resolved included); no reminder repeats within the hour.
        assert 1 + 60 / group_interval <= 5, sub["receiver"]
        assert repeat >= 4 * 60, sub["receiver"]


def test_budget_burn_inhibits_overdue_of_the_same_source() -> None:
    rules = yaml.safe_load(AM_CONFIG.read_text())["inhibit_rules"]
    (rule,) = [
        r for r in rules if r["source_matchers"] == ['alertname="CrawlerSourceErrorBudgetBurn"']
    ]
    assert rule["target_matchers"] == ['alertname="CrawlerSourceOverdue"']
    assert rule["equal"] == ["job", "source"]


def test_resolved_message_says_how_long_it_lasted(tmp_path: Path) -> None:
    """Rendered by Debian's amtool (Alertmanager 0.25); the template uses only Go's own
    functions and reReplaceAll, which Alertmanager 0.33 has as well."""
    lasted = {"3h5m": "13:05:20", "45m": "10:45:00", "3h": "13:00:10", "under a minute": "10:00:20"}
    alerts = []
    for text, end in lasted.items():
        alert = _alert("resolved", text, f"lasted {text}")
        alert["endsAt"] = f"2026-01-01T{end}Z"
        alerts.append(alert)
    alerts.append(_alert("firing", "still", "still firing"))
    data = {
        "receiver": "slack-critical",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": "CrawlerSourceErrorBudgetBurn"},
        "commonLabels": {"alertname": "CrawlerSourceErrorBudgetBurn"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
    }
    proc = render_template(tmp_path, data, '{{ template "crawler.slack.text" . }}')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for text, end in lasted.items():
        assert (
            f"source: `{text}` · instance: `pi:9410` · since 2026-01-01 10:00 UTC, " in proc.stdout
        )
        assert f"resolved {end[:5]} UTC, lasted {text}\n" in proc.stdout
    assert proc.stdout.count("lasted") == len(lasted) * 2  # summary and duration line
    assert "source: `still` · instance: `pi:9410` · since 2026-01-01 10:00 UTC\n" in proc.stdout


def _alert(status: str, source: str, summary: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": "CrawlerSourceErrorBudgetBurn",
            "severity": "warning",
            "job": "crawler",
            "instance": "pi:9410",
            "source": source,
            "grafana_url": GRAFANA,
            "runbook_base_url": RUNBOOK[:-1],
        },
        "annotations": {
            "summary": summary,
            "description": f"description of {source}",
            "runbook_url": RUNBOOK + "crawlersourceerrorbudgetburn",
        },
        "startsAt": "2026-01-01T10:00:00Z",
        "endsAt": "2026-01-01T10:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": source,
    }


def test_slack_template_lists_every_alert_of_the_group(tmp_path: Path) -> None:
    data = {
        "receiver": "slack-warning",
        "status": "firing",
        "alerts": [
            _alert("firing", "quotes", "Source quotes: 40% fail"),
            _alert("firing", "api", "Source api: 25% fail"),
            _alert("resolved", "books", "Source books: 12% fail"),
        ],
        "groupLabels": {"alertname": "CrawlerSourceErrorBudgetBurn", "job": "crawler"},
        "commonLabels": {"alertname": "CrawlerSourceErrorBudgetBurn", "severity": "warning"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
    }
    proc = render_template(
        tmp_path,
        data,
        '{{ template "crawler.slack.title" . }}\n{{ template "crawler.slack.text" . }}',
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.startswith("[FIRING:2] CrawlerSourceErrorBudgetBurn (warning)")
    for summary in ("Source quotes: 40% fail", "Source api: 25% fail"):
        assert f":red_circle: *{summary}*" in out
    assert ":white_check_mark: RESOLVED *Source books: 12% fail*" in out
    for source in ("quotes", "api", "books"):
        assert f"source: `{source}`" in out
        assert f"description of {source}" in out
    assert out.count(f"<{RUNBOOK}crawlersourceerrorbudgetburn|Runbook>") == 3
    for source in ("quotes", "api", "books"):
        assert f"<{GRAFANA}/d/crawler-overview?var-source={source}|Grafana>" in out
