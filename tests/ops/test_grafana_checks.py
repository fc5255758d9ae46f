"""Queries and dashboards checked with the upstream packages, not by reading them.

tests/grafana_check.cjs runs once (one node process) on everything:

* every LogQL expression (Loki rules, the Logs dashboard's targets and variables) parsed with
  `@grafana/lezer-logql`, the grammar Grafana's Loki editor uses;
* every PromQL expression (Prometheus rules, dashboard targets and variables) parsed with
  `@prometheus-io/lezer-promql` at the version of the Prometheus that compose pins (promtool 2.42
  from Debian lags Prometheus 3's grammar);
* every dashboard type-checked by TypeScript against `@grafana/schema` at the pinned Grafana
  version, with each panel's options and each Loki target against their composable types;
* every unit looked up in `@grafana/data`'s value formats.

The packages are pinned in tests/package.json and installed by scripts/test into
tests/node_modules. What no package here can check: how Grafana renders a panel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.test_dashboards import (
    LOKI_LABELS,
    all_panels,
    all_promql,
    dashboards,
    queries,
    substitute,
)

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests"
# Grafana's LokiVariableQueryType (public/app/plugins/datasource/loki/types.ts): LabelNames = 0,
# LabelValues = 1. A string there leaves the variable editor's fields hidden.
LOKI_LABEL_VALUES = 1
# The versions Grafana's PostgreSQL config editor offers (postgresVersions in its
# PostgresConfigEditor): 9.0-9.6, then 10-15; "15" stands for every later one.
POSTGRES_VERSIONS = {900, 901, 902, 903, 904, 905, 906, 1000, 1100, 1200, 1300, 1400, 1500}
# Deliberately broken expressions: each must be reported, or the check checks nothing.
CANARIES = {
    "logql": ("canary", 'sum by (job (count_over_time({job="crawler"}[1m]))'),
    "promql": ("canary", "rate(crawler_pages_total[5m]"),
}


def node_tools() -> str:
    node = shutil.which("node")
    missing = []
    if node is None:
        missing.append("node (Debian package nodejs)")
    if not (NODE_DIR / "node_modules" / "@grafana" / "lezer-logql").is_dir():
        missing.append("tests/node_modules (npm ci --prefix tests)")
    if missing:
        reason = f"{', '.join(missing)} missing: scripts/test installs them"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(f"SKIPPED LOUDLY: {reason}")
    assert node
    return node


def logql_expressions() -> list[tuple[str, str]]:
    exprs = []
    for rel in sorted((ROOT / "loki" / "rules").rglob("*.y*ml")):
        for group in yaml.safe_load(rel.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                exprs.append(
                    (f"{rel.relative_to(ROOT)}/{rule.get('alert') or rule['record']}", rule["expr"])
                )
    for name, dash in dashboards().items():
        values = {v["name"]: ".*" for v in dash["templating"]["list"]}
        for title, expr, _ in queries(dash, "loki"):
            exprs.append((f"{name}/{title}", substitute(expr, values)))
        for v in dash["templating"]["list"]:
            if v["datasource"]["type"] == "loki":
                exprs.append(
                    (f"{name}/variable {v['name']}", substitute(v["query"]["stream"], values))
                )
    return exprs


def promql_expressions() -> list[tuple[str, str]]:
    exprs = list(all_promql())
    for rel in sorted((ROOT / "prometheus" / "rules").glob("*.yml")):
        for group in (yaml.safe_load(rel.read_text(encoding="utf-8")) or {}).get("groups", []):
            for rule in group["rules"]:
                exprs.append(
                    (
                        f"{rel.relative_to(ROOT)}/{rule.get('alert') or rule['record']}",
                        str(rule["expr"]),
                    )
                )
    return exprs


def units() -> list[tuple[str, str]]:
    found = []
    for name, dash in dashboards().items():
        for p in all_panels(dash):
            fc = p.get("fieldConfig", {})
            if "unit" in fc.get("defaults", {}):
                found.append((f"{name}/{p['title']}", fc["defaults"]["unit"]))
            for o in fc.get("overrides", []):
                for prop in o.get("properties", []):
                    if prop["id"] == "unit":
                        found.append((f"{name}/{p['title']} override", prop["value"]))
    return found


def run_node(job: dict[str, Any]) -> dict[str, Any]:
    """tests/grafana_check.cjs on one job, in a scratch folder where it finds the packages."""
    node = node_tools()
    work = Path(tempfile.mkdtemp(prefix=".schema-check-", dir=NODE_DIR / "node_modules"))
    try:
        (work / "job.json").write_text(json.dumps({**job, "workdir": str(work)}), encoding="utf-8")
        script, out = NODE_DIR / "grafana_check.cjs", work / "out.json"
        proc = subprocess.run(
            [node, str(script), str(work / "job.json"), str(out)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return dict(json.loads(out.read_text(encoding="utf-8")))
    finally:
        shutil.rmtree(work, ignore_errors=True)


@cache
def check() -> dict[str, Any]:
    job = {
        "logql": [*logql_expressions(), CANARIES["logql"]],
        "promql": [*promql_expressions(), CANARIES["promql"]],
        "units": [*units(), ("canary", "crawler_pages")],
        "dashboards": dashboards(),
    }
    return {**run_node(job), "job": job}


def pinned_image(service: str) -> str:
    image = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))["services"][
        service
    ]["image"]
    tag = re.fullmatch(r"[^:@]+:v?([^@]+)(@sha256:[0-9a-f]+)?", image)
    assert tag, image
    return tag.group(1)


def problems(kind: str) -> list[dict[str, str]]:
    found = check()[kind]
    canary = [p for p in found if p["where"] == "canary"]
    assert canary, f"the broken {kind} canary was not reported: the check checks nothing"
    return [p for p in found if p["where"] != "canary"]


def test_packages_match_the_pinned_servers() -> None:
    versions = check()["versions"]
    major, minor, _ = (int(x) for x in pinned_image("prometheus").split("."))
    # @prometheus-io/lezer-promql 0.MMmm.p is cut from Prometheus MM.mm.p (3.14.0 -> 0.314.0).
    assert versions["@prometheus-io/lezer-promql"].startswith(f"0.{major * 100 + minor}."), versions
    assert versions["@grafana/schema"] == pinned_image("grafana"), versions
    assert versions["@grafana/data"] == pinned_image("grafana"), versions
    lock = json.loads((NODE_DIR / "package-lock.json").read_text(encoding="utf-8"))
    wanted = json.loads((NODE_DIR / "package.json").read_text(encoding="utf-8"))["dependencies"]
    for name, version in wanted.items():
        assert (
            version
            == versions.get(name, version)
            == lock["packages"][f"node_modules/{name}"]["version"]
        )


def test_every_logql_expression_parses() -> None:
    exprs = check()["job"]["logql"]
    assert len(exprs) >= 8, exprs
    bad = problems("logql")
    assert not bad, "\n".join(f"{p['where']}: {p['error']}" for p in bad)


def test_every_promql_expression_parses_with_the_pinned_prometheus_grammar() -> None:
    exprs = check()["job"]["promql"]
    assert len(exprs) >= 50, len(exprs)
    bad = problems("promql")
    assert not bad, "\n".join(f"{p['where']}: {p['error']}" for p in bad)


def test_every_unit_is_one_grafana_knows() -> None:
    result = check()
    assert result["known_units"] > 100
    bad = [p for p in result["units"] if p["where"] != "canary"]
    assert len(result["units"]) == len(bad) + 1, "the canary unit was not reported"
    assert not bad, bad


def test_every_dashboard_matches_the_grafana_schema() -> None:
    errors = check()["schema"]
    assert not errors, "\n".join(errors)


def test_schema_check_can_fail() -> None:
    dash = json.loads((ROOT / "grafana/dashboards/logs.json").read_text(encoding="utf-8"))
    dash["graphTooltip"] = "shared"  # a number in the schema
    dash["panels"][0]["options"]["legend"] = {"placement": "left"}  # bottom or right
    dash["panels"][0]["targets"][0]["queryType"] = "ranged"  # range, instant or stream
    dash["panels"][0]["targets"][0]["editorMode"] = "text"  # code or builder
    errors = "\n".join(run_node({"dashboards": {"broken": dash}})["schema"])
    for wrong in ('"shared"', '"left"', '"ranged"', '"text"'):
        assert wrong in errors, errors


# ----------------------------------------------------------------- what the schema cannot see


def test_loki_variables_use_grafanas_query_type() -> None:
    for name, dash in dashboards().items():
        for v in dash["templating"]["list"]:
            if v["datasource"]["type"] != "loki":
                continue
            q = v["query"]
            assert q["type"] == LOKI_LABEL_VALUES, f"{name}/{v['name']}: type {q['type']!r}"
            assert q["label"] in LOKI_LABELS and q["stream"], f"{name}/{v['name']}"


def test_log_counts_follow_the_panel_step() -> None:
    """count_over_time over a fixed [1m] on a 24 h panel counts 1 minute in every step."""
    for name, dash in dashboards().items():
        for title, expr, target in queries(dash, "loki"):
            ranges = re.findall(r"\[([^\]]+)\]", expr)
            if target.get("queryType", "range") == "range" and ranges:
                assert set(ranges) == {"$__auto"}, f"{name}/{title}: {expr}"


def test_postgres_datasource_version_is_one_the_editor_offers() -> None:
    rel = ROOT / "grafana/provisioning/datasources/datasources.yaml"
    for ds in yaml.safe_load(rel.read_text(encoding="utf-8"))["datasources"]:
        if ds["type"] == "grafana-postgresql-datasource":
            assert ds["jsonData"]["postgresVersion"] in POSTGRES_VERSIONS, ds["jsonData"]
