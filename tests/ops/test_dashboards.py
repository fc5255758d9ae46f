"""Grafana dashboards: structure, datasource references, and every query checked for real.

* Every dashboard is plain JSON with `"id": null`, a unique uid, datasource
  references by uid that exist in grafana/provisioning/datasources, and a title,
  description and unit on every panel.
* Every PromQL expression (panel targets and template-variable queries) parses:
  they go into a generated rules file, one recording rule each, checked with
  `promtool check rules`.
* Every SQL query runs on a real PostgreSQL with the crawler's own migrations.
* LogQL stream selectors use only the four labels Promtail promotes (the
  grammar itself: tests/ops/test_grafana_checks.py; the queries against a real
  Loki: tests/ops/test_logs_e2e.py).
* End to end: a real Prometheus scrapes a real crawler (crawling a local
  aiohttp site into a real PostgreSQL, one source behind a form login, one
  single-page app rendered by a real headless Chromium) and a real node_exporter made to look
  like a Pi (a thermal zone and the throttling textfile). The template
  variables are resolved the way Grafana would, and every query of the
  Crawler overview and Pi host dashboards must return data; the Data
  dashboard's SQL must return rows from what the crawler stored.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.chromium import Chromium
from tests.helpers import free_port, require, wait_for
from tests.login_site import USER, LoginSite
from tests.render_site import ShopSite
from tests.site import Site

ROOT = Path(__file__).resolve().parents[2]
DASH_DIR = ROOT / "grafana" / "dashboards"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
LOKI_LABELS = {"job", "host", "level", "source"}
# What Grafana puts in for its built-in variables when the tests evaluate a query.
BUILTINS = {"__rate_interval": "15s", "__interval": "1m", "__range": "1h", "__auto": "1m"}
VAR_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def dashboards() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(DASH_DIR.glob("*.json")):
        out[path.name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def all_panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for p in dash.get("panels", []):
        found.append(p)
        found.extend(p.get("panels", []))  # panels inside collapsed rows
    return found


def datasource_uids() -> dict[str, str]:
    ds = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    return {d["uid"]: d["type"] for d in ds}


def queries(dash: dict[str, Any], ds_type: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(panel title, query text, target) for every target of one datasource type."""
    out = []
    for p in all_panels(dash):
        for t in p.get("targets", []):
            ds = t.get("datasource") or p.get("datasource") or {}
            if ds.get("type") != ds_type:
                continue
            text = t.get("rawSql") if ds_type.endswith("postgresql-datasource") else t.get("expr")
            assert text, f"{p['title']}: empty query"
            out.append((p["title"], text, t))
    return out


def prom_variable_exprs(dash: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for v in dash["templating"]["list"]:
        if v.get("datasource", {}).get("type") != "prometheus":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q)
        assert m, f"variable {v['name']}: {q}"
        out.append((f"variable {v['name']}", m.group(1)))
    return out


def substitute(text: str, values: dict[str, str]) -> str:
    merged = {**BUILTINS, **values}

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in merged:
            raise AssertionError(f"unknown variable ${name} in {text!r}")
        return merged[name]

    return VAR_RE.sub(repl, text)


def check_promql(exprs: list[tuple[str, str]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    rules = [{"record": f"dashboard:query_{i}:check", "expr": e} for i, (_, e) in enumerate(exprs)]
    f = tmp_path / "dashboard_queries.yml"
    f.write_text(
        yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8"
    )
    return subprocess.run(
        [require("promtool"), "check", "rules", str(f)], capture_output=True, text=True, timeout=60
    )


# ----------------------------------------------------------------- structure


def test_there_are_the_four_dashboards() -> None:
    titles = {d["title"] for d in dashboards().values()}
    assert titles == {"Crawler overview", "Pi host", "Data", "Logs"}


def test_dashboards_are_plain_json_with_null_id_and_unique_uids() -> None:
    uids = []
    for name, d in dashboards().items():
        assert d["id"] is None, name
        assert re.fullmatch(r"[a-z0-9-]{1,40}", d["uid"]), name
        uids.append(d["uid"])
        text = (DASH_DIR / name).read_text(encoding="utf-8")
        assert "${DS_" not in text and "__inputs" not in d, f"{name} still has import placeholders"
        ids = [p["id"] for p in all_panels(d)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
    assert len(uids) == len(set(uids))


def test_every_datasource_reference_exists_in_provisioning() -> None:
    known = datasource_uids()
    assert set(known) == {"prometheus", "loki", "alertmanager", "postgres"}

    def check(where: str, ref: Any) -> None:
        assert isinstance(ref, dict), f"{where}: datasource must be {{type, uid}}, got {ref!r}"
        assert ref["uid"] in known, f"{where}: unknown datasource uid {ref['uid']}"
        assert known[ref["uid"]] == ref["type"], f"{where}: {ref['uid']} is a {known[ref['uid']]}"

    for name, d in dashboards().items():
        for p in all_panels(d):
            if p["type"] == "row":
                continue
            check(f"{name}/{p['title']}", p["datasource"])
            for t in p["targets"]:
                check(f"{name}/{p['title']}/{t['refId']}", t["datasource"])
        for v in d["templating"]["list"]:
            check(f"{name}/variable {v['name']}", v["datasource"])


def test_every_panel_explains_itself() -> None:
    for name, d in dashboards().items():
        for p in all_panels(d):
            if p["type"] == "row":
                assert p["title"]
                continue
            assert p["title"] and p.get("description"), f"{name}: panel {p.get('id')}"
            assert p["fieldConfig"]["defaults"].get("unit"), f"{name}/{p['title']}: no unit"
            assert p["targets"], f"{name}/{p['title']}: no query"


def test_panels_fit_the_grid_without_overlapping() -> None:
    for name, d in dashboards().items():
        cells: dict[tuple[int, int], str] = {}
        for p in all_panels(d):
            g = p["gridPos"]
            assert g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, f"{name}/{p['title']}"
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{name}: {p['title']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = p["title"]


def test_template_variables() -> None:
    by_uid = {d["uid"]: d for d in dashboards().values()}
    names = {uid: {v["name"] for v in d["templating"]["list"]} for uid, d in by_uid.items()}
    assert names["crawler-overview"] == {"instance", "source"}
    assert names["pi-host"] == {"instance"}
    assert "source" in names["crawler-data"] and "source" in names["crawler-logs"]
    for uid, d in by_uid.items():
        declared = names[uid]
        used = set()
        for p in all_panels(d):
            for t in p.get("targets", []):
                text = t.get("expr") or t.get("rawSql") or ""
                used |= {a or b or c for a, b, c in VAR_RE.findall(text)}
        assert declared <= used, f"{uid}: variables {declared - used} are never used"
        undeclared = {u for u in used - declared if not u.startswith("__")}
        assert not undeclared, f"{uid}: undeclared variables {undeclared}"


def test_grafana_home_dashboard_is_provisioned() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    home = compose["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    provider = yaml.safe_load(
        (ROOT / "grafana/provisioning/dashboards/dashboards.yaml").read_text(encoding="utf-8")
    )["providers"][0]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (DASH_DIR / Path(home).name).is_file()


# ----------------------------------------------------------------- PromQL


def all_promql() -> list[tuple[str, str]]:
    exprs = []
    for name, d in dashboards().items():
        values = {v["name"]: ".*" for v in d["templating"]["list"]}
        for title, expr, _ in queries(d, "prometheus"):
            exprs.append((f"{name}/{title}", substitute(expr, values)))
        for title, expr in prom_variable_exprs(d):
            exprs.append((f"{name}/{title}", substitute(expr, values)))
    return exprs


def test_every_promql_expression_parses(tmp_path: Path) -> None:
    exprs = all_promql()
    assert len(exprs) > 30
    result = check_promql(exprs, tmp_path)
    listing = "\n".join(f"query_{i}: {w}: {e}" for i, (w, e) in enumerate(exprs))
    assert result.returncode == 0, result.stdout + result.stderr + "\n" + listing


def test_promql_check_can_fail(tmp_path: Path) -> None:
    result = check_promql([("broken", "sum by (source (rate(crawler_pages_total[5m]))")], tmp_path)
    assert result.returncode != 0


def test_promql_uses_only_documented_crawler_metrics() -> None:
    documented = set(
        re.findall(r"^\| `(crawler_\w+)`", (ROOT / "docs/metrics.md").read_text(), re.M)
    )
    assert documented
    for where, expr in all_promql():
        for metric in re.findall(r"\b(crawler_\w+?)(?:_bucket|_sum|_count)?\b(?=\s*[{\[)])", expr):
            assert metric in documented, f"{where}: {metric} is not in docs/metrics.md"


# ----------------------------------------------------------------- LogQL


def test_logql_selects_only_promoted_labels() -> None:
    logs = dashboards()["logs.json"]
    exprs = [e for _, e, _ in queries(logs, "loki")]
    assert exprs
    for v in logs["templating"]["list"]:
        exprs.append(v["query"]["stream"])
        assert v["query"]["label"] in LOKI_LABELS
        assert v["query"]["type"] == 1  # Grafana's LokiVariableQueryType.LabelValues
    for expr in exprs:
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        selectors = re.findall(r"(?<![{\w.])\{([^{}]*)\}", expr)
        assert selectors, expr
        for sel in selectors:
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", sel):
                assert label in LOKI_LABELS, f"{label} is not a Loki label here: {expr}"
            # Loki needs one matcher that cannot match the empty string.
            assert re.search(r'\w+\s*=\s*"[^"]+"|\w+\s*=~\s*"[^"]*[^*"]+"', sel), expr


# ----------------------------------------------------------------- SQL


def pg_migrate(dsn: str) -> None:
    from crawler.storage.postgres import PG_MIGRATIONS

    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in PG_MIGRATIONS:
            conn.execute(sql)


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def grafana_sql(sql: str, values: dict[str, list[str]], now: datetime) -> str:
    """Grafana's PostgreSQL macros and variables, expanded the way the datasource does (a
    variable's values quoted and comma-separated, as with `${var:sqlstring}`)."""
    start, end = (now - timedelta(days=7)).isoformat(), (now + timedelta(minutes=1)).isoformat()
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN '{start}' AND '{end}'", sql)
    sql = re.sub(
        r"\$__timeGroupAlias\((\w+),\s*\$__interval\)",
        r'floor(extract(epoch from \1)/60)*60 AS "time"',
        sql,
    )
    quoted = {k: ",".join(sql_literal(v) for v in vs) or "NULL" for k, vs in values.items()}
    sql = substitute(sql, quoted)
    assert "$" not in sql, sql
    return sql


def run_data_dashboard(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every variable's query (in order, each seeing the ones before), then every panel's."""
    data = dashboards()["data.json"]
    now = datetime.now(timezone.utc)
    results = {}
    values: dict[str, list[str]] = {}
    with psycopg.connect(dsn) as conn:
        for var in data["templating"]["list"]:
            found = [r[0] for r in conn.execute(grafana_sql(var["query"], values, now)).fetchall()]
            # A single-value variable takes its first option, as Grafana does on first load.
            values[var["name"]] = found if var.get("multi") else found[:1]
            results[f"variable {var['name']}"] = [(v,) for v in found]
        for title, sql, _ in queries(data, "grafana-postgresql-datasource"):
            results[title] = conn.execute(grafana_sql(sql, values, now)).fetchall()
    return results


def test_every_sql_query_runs_on_the_crawler_schema(pg_dsn: str) -> None:
    pg_migrate(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO scraped_data (source, key, data, first_seen, last_seen)"
            " VALUES ('a', 'k1', '{\"x\": 1}', now(), now())"
        )
        conn.execute(
            "INSERT INTO crawler_jobs (source, instance, status, started_at, finished_at, pages,"
            " records, error) VALUES ('a', 'pi', 'failure', now(), now(), 1, 0, 'boom')"
        )
        # Two versions of one record of a `history: true` source: the price changed.
        conn.execute(
            "INSERT INTO scraped_data_history (source, key, data, seen_at) VALUES"
            " ('a', 'k1', '{\"x\": 1, \"price\": 9.5, \"name\": \"n\"}', now() - interval '1 hour'),"
            ' (\'a\', \'k1\', \'{"x": 1, "price": 12.25, "name": "n"}\', now())'
        )
    results = run_data_dashboard(pg_dsn)
    assert len(results) >= 8
    assert results["Latest failures"][0][-1] == "boom"
    assert results["Records in the database"] == [(1,)]
    # Only numeric fields are offered; the first (price) and the only key are chosen.
    assert results["variable field"] == [("price",), ("x",)]
    assert results["variable key"] == [("k1",)]
    history = results["A field of one record over time (history)"]
    assert [(metric, float(value)) for _, metric, value in history] == [
        ("a k1", 9.5),
        ("a k1", 12.25),
    ]


# ----------------------------------------------------------------- end to end


class Proc:
    """A child process whose output goes to a file, stopped with SIGTERM then SIGKILL."""

    def __init__(self, args: list[str], log: Path, **kw: Any) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._out, stderr=subprocess.STDOUT, **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def prom_query(base: str, expr: str) -> list[Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = http_json(url)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def label_values(base: str, label: str, match: str) -> list[str]:
    url = f"{base}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": match})
    return list(http_json(url)["data"])


def grafana_regex(values: list[str]) -> str:
    """A multi-value variable as Grafana formats it for Prometheus: (a|b), regex-escaped."""
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def resolve_variables(base: str, dash: dict[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for v in dash["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"])
        assert m
        found = label_values(base, m.group(2), substitute(m.group(1), values))
        assert found, f"variable {v['name']} has no values"
        values[v["name"]] = grafana_regex(found)
    return values


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site().start()
    yield s
    s.stop()


@pytest.fixture
def members() -> Iterator[LoginSite]:
    s = LoginSite("members-pw").start()
    yield s
    s.stop()


@pytest.fixture
def shop() -> Iterator[ShopSite]:
    s = ShopSite().start()
    yield s
    s.stop()


@pytest.fixture
def stack(
    tmp_path: Path,
    pg_dsn: str,
    site: Site,
    members: LoginSite,
    shop: ShopSite,
    chromium: Chromium,
) -> Iterator[dict[str, Any]]:
    """Crawler + Pi-like node_exporter + Prometheus scraping both every second."""
    (tmp_path / "members_password").write_text(members.password)
    procs: list[Proc] = []
    crawler_port, node_port, prom_port = free_port(), free_port(), free_port()
    cfg = {
        "instance": "e2e",
        "log_level": "INFO",
        "state_dir": str(tmp_path / "state"),
        "metrics": {"listen": f"127.0.0.1:{crawler_port}"},
        "storage": {"dsn": pg_dsn},
        "fetch": {"politeness_delay": "0s", "retry": {"attempts": 1}},
        # A real headless Chromium (tests/chromium.py): the rendering panels.
        "browser": {"endpoint": chromium.endpoint},
        "sources": [
            {
                "name": "quotes_html",
                "every": "2s",
                "urls": [f"{site.base}/page/{{1..2}}"],
                "parser": "html",
                "items": "div.quote",
                "fields": {"text": "span.text::text", "author": "small.author::text"},
                "key": ["text", "author"],
            },
            {
                "name": "quotes_api",
                "every": "2s",
                "urls": [f"{site.base}/api/{{1..2}}"],
                "parser": "json",
                "items": "items",
                "fields": {
                    "text": "text",
                    "author": "author",
                    # A regex and a type: a number for the history panel.
                    "n": {"path": "text", "regex": "Quote (\\d+)", "type": "int"},
                },
                "key": ["text"],
                "history": True,
            },
            # Follows the quotes' tag links (7 distinct, at most 2 a run, answering 404):
            # the Discovery panels' pages by role, links by reason and bound hits.
            {
                "name": "tags",
                "every": "2s",
                "urls": [f"{site.base}/page/1"],
                "follow": {"links": "a.tag::attr(href)", "max_per_run": 2},
                "fields": {"title": "h1::text"},
            },
            # Behind a form login (tests/login_site.py): the Logins and Session age panels.
            {
                "name": "members",
                "every": "2s",
                "urls": [f"{members.base}/members/{{0..0}}"],
                "items": "div.quote",
                "fields": {"text": "span.text::text"},
                "login": {
                    "url": f"{members.base}/login",
                    "username": USER,
                    "password_file": str(tmp_path / "members_password"),
                },
            },
            # A single-page app (tests/render_site.py), rendered: the rendering panels.
            {
                "name": "spa_shop",
                "every": "2s",
                "urls": [f"{shop.base}/shop"],
                "render": {"wait_for": "p.ready", "timeout": "20s"},
                "items": "div.product",
                "fields": {"name": "h2::text"},
            },
            # Answers 404: failed runs for the Data dashboard's failure panels.
            {
                "name": "broken",
                "every": "2s",
                "urls": [f"{site.base}/missing/{{1..1}}"],
                "parser": "html",
                "items": "div.quote",
                "fields": {"text": "span.text::text"},
            },
        ],
    }
    (tmp_path / "crawler.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")

    # node_exporter that looks like a Pi: a thermal zone and the throttling textfile.
    zone = tmp_path / "sys" / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("51540\n")
    (zone / "policy").write_text("step_wise\n")
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    from exporters.throttled import render

    (textfile / "rpi_throttled.prom").write_text(render(0x50000), encoding="utf-8")

    prom_cfg = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "crawler", "static_configs": [{"targets": [f"127.0.0.1:{crawler_port}"]}]},
            {"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{node_port}"]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_cfg), encoding="utf-8")
    crawler_exe = ROOT / ".venv" / "bin" / "crawler"
    exe = [str(crawler_exe)] if crawler_exe.exists() else [sys.executable, "-m", "crawler"]
    node_exe = require("prometheus-node-exporter")
    prom_exe = require("prometheus")
    try:
        procs.append(
            Proc(
                [*exe, "run", "-c", str(tmp_path / "crawler.yaml")],
                tmp_path / "crawler.log",
                cwd=tmp_path,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        )
        procs.append(
            Proc(
                [
                    node_exe,
                    f"--web.listen-address=127.0.0.1:{node_port}",
                    f"--path.sysfs={tmp_path / 'sys'}",
                    f"--collector.textfile.directory={textfile}",
                    "--no-collector.systemd",
                ],
                tmp_path / "node.log",
            )
        )
        procs.append(
            Proc(
                [
                    prom_exe,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                tmp_path / "prom.log",
            )
        )
        base = f"http://127.0.0.1:{prom_port}"
        yield {"prometheus": base, "dsn": pg_dsn, "procs": procs}
    finally:
        for p in reversed(procs):
            p.stop()


def unanswered(base: str, dash: dict[str, Any]) -> list[str]:
    values = resolve_variables(base, dash)
    missing = []
    for title, expr, _ in queries(dash, "prometheus"):
        if not prom_query(base, substitute(expr, values)):
            missing.append(f"{title}: {expr}")
    return missing


@pytest.mark.timeout(90)
def test_every_crawler_and_host_panel_returns_data(stack: dict[str, Any]) -> None:
    base = stack["prometheus"]
    boards = dashboards()
    crawler, host = boards["crawler-overview.json"], boards["pi-host.json"]

    def up() -> bool:
        try:
            targets = http_json(f"{base}/api/v1/targets")["data"]["activeTargets"]
        except OSError:
            return False
        return len(targets) == 2 and all(t["health"] == "up" for t in targets)

    try:
        wait_for(up, timeout=30, interval=0.5)
        # Rates need a few scrapes and the sources a few runs; poll until every
        # query answers, then report the ones that never did.
        deadline = time.monotonic() + 40
        missing: list[str] = ["not yet asked"]
        while missing and time.monotonic() < deadline:
            try:
                missing = unanswered(base, crawler) + unanswered(base, host)
            except AssertionError as exc:  # a variable without values yet
                missing = [str(exc)]
            if missing:
                time.sleep(1)
    except AssertionError:
        raise AssertionError("\n\n".join(p.tail() for p in stack["procs"])) from None
    assert not missing, "queries without data:\n" + "\n".join(missing)
    assert not prom_query(base, "crawler_no_such_metric"), "an empty answer must look empty"

    # The Data dashboard on what the crawler stored (both sources' two pages
    # of 20 records, and the broken source's failed runs).
    def data_complete() -> dict[str, list[tuple[Any, ...]]] | None:
        results = run_data_dashboard(stack["dsn"])
        counts = {r[0]: r[1] for r in results["Records per source"]}
        done = counts.get("quotes_html") == 40 and counts.get("quotes_api") == 40
        return results if done and results["Latest failures"] else None

    results = wait_for(data_complete, timeout=20, interval=0.5)
    assert isinstance(results, dict)
    for title, rows in results.items():
        assert rows, f"Data/{title}: no rows"
    counts = {r[0]: r[1] for r in results["Records per source"]}
    assert counts.get("quotes_html") == 40 and counts.get("quotes_api") == 40, counts
    assert any(r[1] == "broken" for r in results["Latest failures"])
