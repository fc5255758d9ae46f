"""The log half checked by the real tools: Loki's and Promtail's own config checks, and the labels
that one real log line of each service gets from the project's pipelines.

The binaries are the real `loki` (v3.7.2) and `promtail` (v3.6.11) that CI and development
machines keep beside the repository (tests.helpers.shared_tool): without them these tests are
skipped with a loud reason, and fail on CI.

* `loki -verify-config` accepts loki/loki.yaml, and its effective config (`-print-config-stderr`)
  keeps the in-process caches within a quarter of the container's memory limit and gives the
  ruler an absolute external URL.
* `promtail -check-syntax` accepts every Promtail config.
* `promtail -stdin -dry-run` runs each pipeline on a real line of each service: the crawler's
  JSON at every level, Prometheus 3 / Alertmanager / exporters' slog logfmt (upper-case levels),
  Loki's, Promtail's and Grafana's go-kit logfmt (lower-case). The labels must be exactly
  `job`, `host`, a normalised `level` and, for the crawler only, `source`.
* Alloy has no binary here (no Debian, PyPI or npm package ships one), so alloy/config.alloy is
  read with tests/alloy_config.py: its `loki.process` stages, turned into the Promtail stages they
  are ported from, must equal Promtail's, and the same table runs through them in the real
  Promtail. What Alloy itself does at run time (its journal and Docker sources) is not checked.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import alloy_config
from tests.helpers import shared_tool

ROOT = Path(__file__).resolve().parents[2]
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
# Alloy releases whose loki.source.journal overwrites a configured `job` (grafana/alloy#6980).
ALLOY_JOB_OVERWRITE = {"1.19.0", "1.19.1", "1.19.2"}


def load(rel: str) -> Any:
    return yaml.safe_load((ROOT / rel).read_text(encoding="utf-8"))


def run(args: list[str], stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------- Loki


# The alert links' settings (.env), which compose passes to Loki with -config.expand-env.
LINKS = {
    "RUNBOOK_BASE_URL": "https://nas.test:3000/docs/runbooks.md",
    "GRAFANA_URL": "https://nas.test:3000",
}


def loki_effective_config(config: Path) -> tuple[subprocess.CompletedProcess[str], Any]:
    proc = subprocess.run(
        [
            shared_tool("loki"),
            f"-config.file={config}",
            "-config.expand-env=true",
            "-verify-config",
            "-print-config-stderr",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **LINKS},
    )
    text = proc.stderr[proc.stderr.find("---") :] if "---" in proc.stderr else ""
    return proc, (yaml.safe_load(text) if proc.returncode == 0 else None)


@functools.cache
def project_loki() -> tuple[subprocess.CompletedProcess[str], Any]:
    return loki_effective_config(ROOT / "loki" / "loki.yaml")


def test_loki_verifies_the_project_config() -> None:
    proc, effective = project_loki()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert effective["server"]["http_listen_port"] == 3100


def test_loki_verify_can_fail(tmp_path: Path) -> None:
    broken = load("loki/loki.yaml")
    broken["limits_config"]["retention_perod"] = "744h"  # a typo Loki must refuse
    path = tmp_path / "loki.yaml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    proc, _ = loki_effective_config(path)
    assert proc.returncode != 0
    assert "retention_perod" in proc.stdout + proc.stderr


def embedded_caches(config: Any, path: str = "") -> dict[str, int]:
    """Every enabled in-process cache in Loki's effective config, with its size in MB."""
    found: dict[str, int] = {}
    if isinstance(config, dict):
        cache = config.get("embedded_cache")
        if isinstance(cache, dict) and cache.get("enabled"):
            found[path] = int(cache["max_size_mb"])
        for key, value in config.items():
            found.update(embedded_caches(value, f"{path}/{key}"))
    return found


def test_loki_caches_fit_its_memory_limit() -> None:
    _, effective = project_loki()
    caches = embedded_caches(effective)
    assert caches, "no cache found: the effective config changed shape"
    limit = load("compose.yaml")["services"]["loki"]["deploy"]["resources"]["limits"]["memory"]
    limit_mb = int(re.fullmatch(r"(\d+)m", limit).group(1))  # type: ignore[union-attr]
    # The rest of the limit is for ingestion (chunks in memory), queries and the Go runtime.
    assert sum(caches.values()) <= limit_mb // 4, f"{caches} in a {limit} container"


def test_loki_ruler_links_are_absolute_and_open_the_logs_dashboard() -> None:
    _, effective = project_loki()
    url = effective["ruler"]["external_url"]
    logs_uid = json.loads((ROOT / "grafana/dashboards/logs.json").read_text())["uid"]
    # generatorURL = external_url + "/graph?g0.expr=…"; Grafana reads "graph" as the slug.
    assert url == f"{LINKS['GRAFANA_URL']}/d/{logs_uid}", url
    # The Slack template's Grafana link and the rules' runbook links come from these labels.
    assert effective["ruler"]["external_labels"] == {
        "grafana_url": LINKS["GRAFANA_URL"],
        "runbook_base_url": LINKS["RUNBOOK_BASE_URL"],
    }


# ----------------------------------------------------------------- Promtail


PROMTAIL_CONFIGS = ["promtail/promtail-compose.yaml", "promtail/promtail-pi.yaml"]


@pytest.mark.parametrize("rel", PROMTAIL_CONFIGS)
def test_promtail_check_syntax(rel: str) -> None:
    proc = run(
        [
            shared_tool("promtail"),
            "-check-syntax",
            "-config.expand-env=true",
            f"-config.file={ROOT / rel}",
        ],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtail_check_syntax_can_fail(tmp_path: Path) -> None:
    broken = load("promtail/promtail-pi.yaml")
    broken["scrape_configs"][0]["pipeline_stages"].append({"jsn": {"expressions": {}}})
    path = tmp_path / "promtail.yaml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    proc = run([shared_tool("promtail"), "-check-syntax", f"-config.file={path}"])
    assert proc.returncode != 0


def crawler_line(level: str, source: str | None = "quotes") -> str:
    """One line exactly as the crawler writes it (its own JSON formatter)."""
    from crawler.observability.logs import setup_logging

    buf = io.StringIO()
    setup_logging("DEBUG", instance="pi", stream=buf)
    try:
        extra = {"url": "https://example.org/page/1?x=1", "error_kind": "timeout", "attempt": 2}
        if source:
            extra["source"] = source
        logging.getLogger("crawler.fetch").log(
            logging.getLevelName(level), "page failed", extra=extra
        )
    finally:
        for h in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(h)
    return buf.getvalue().splitlines()[-1]


# (job, line, labels beyond job and host). Lines in each server's own format, as the pinned
# versions write them: slog (Prometheus 3, Alertmanager 0.33, node_exporter 1.11,
# postgres_exporter 0.19) with upper-case levels; go-kit (Loki, Promtail) and Grafana lower case.
SERVICE_LINES: list[tuple[str, str, dict[str, str]]] = [
    *[("crawler", crawler_line(lv), {"level": lv, "source": "quotes"}) for lv in sorted(LEVELS)],
    ("crawler", crawler_line("INFO", source=None), {"level": "INFO"}),
    ("pipeline-exporter", crawler_line("WARNING", source=None), {"level": "WARNING"}),
    (
        "prometheus",
        'time=2026-11-22T14:02:11.512Z level=ERROR source=manager.go:176 msg="Error sending alerts" '
        'component=notifier alertmanager=http://alertmanager:9093/api/v2/alerts count=1 err="context deadline exceeded"',
        {"level": "ERROR"},
    ),
    (
        "prometheus",
        'time=2026-11-22T14:02:11.512Z level=WARN source=scrape.go:1890 msg="Appending scrape report failed" '
        'component="scrape manager" scrape_pool=crawler target=http://crawler:9410/metrics err="out of bounds"',
        {"level": "WARNING"},
    ),
    (
        "prometheus",
        'time=2026-11-22T14:02:11.512Z level=INFO source=main.go:1500 msg="Server is ready to receive web requests."',
        {"level": "INFO"},
    ),
    (
        "alertmanager",
        'time=2026-11-22T14:02:11.512Z level=ERROR source=dispatch.go:360 msg="Notify for alerts failed" '
        'component=dispatcher num_alerts=1 err="slack/slack[0]: notify retry canceled after 3 attempts"',
        {"level": "ERROR"},
    ),
    (
        "alertmanager",
        'time=2026-11-22T14:02:11.512Z level=DEBUG source=dispatch.go:165 msg="Received alert" component=dispatcher',
        {"level": "DEBUG"},
    ),
    (
        "node-exporter",
        'time=2026-11-22T14:02:11.512Z level=ERROR source=collector.go:168 msg="collector failed" '
        'name=thermal_zone duration_seconds=0.0004 err="open /sys/class/thermal: no such file or directory"',
        {"level": "ERROR"},
    ),
    (
        "postgres-exporter",
        'time=2026-11-22T14:02:11.512Z level=WARN source=datasource.go:102 msg="Error opening connection to database" '
        'dsn=postgresql://crawler:PASSWORD_REMOVED@postgres:5432/crawler err="dial tcp: lookup postgres: no such host"',
        {"level": "WARNING"},
    ),
    (
        "loki",
        "level=warn ts=2026-11-22T14:02:11.512345678Z caller=logging.go:128 orgID=fake "
        'msg="POST /loki/api/v1/push (400) 1.2ms Response: \\"entry too far behind\\""',
        {"level": "WARNING"},
    ),
    (
        "promtail",
        "level=error ts=2026-11-22T14:02:11.512Z caller=client.go:430 component=client host=loki:3100 "
        'msg="final error sending batch" status=-1 tenant= error="Post \\"http://loki:3100/loki/api/v1/push\\": EOF"',
        {"level": "ERROR"},
    ),
    (
        "grafana",
        "logger=context userId=1 orgId=1 uname=admin t=2026-11-22T14:02:11.512+00:00 level=error "
        'msg="Request Completed" method=GET path=/api/ds/query status=500 remote_addr=172.18.0.1',
        {"level": "ERROR"},
    ),
    (
        "grafana",
        'logger=infra.usagestats t=2026-11-22T14:02:11.512+00:00 level=info msg="Usage stats are ready to report"',
        {"level": "INFO"},
    ),
    (
        "proxy",
        '{"level":"error","ts":1795357974.12,"logger":"http.log.error","msg":"dial tcp: '
        'lookup grafana: no such host","request":{"remote_ip":"192.168.1.23","method":"GET"}}',
        {"level": "ERROR"},
    ),
    (
        "proxy",
        '{"level":"info","ts":1795357974.12,"logger":"tls","msg":"certificate obtained"}',
        {"level": "INFO"},
    ),
    # PostgreSQL's own format carries no key=value level: it gets none (no guessing).
    (
        "postgres",
        "2026-11-22 14:02:11.512 UTC [1] LOG:  database system is ready to accept connections",
        {},
    ),
]

# Promtail prints "time<TAB>{labels}<TAB>line" through a tabwriter with no padding: where a
# column's width is a multiple of 8 its tab is left out, so the label set is parsed.
DRY_RUN_LINE = re.compile(r'^([^\t{]+)\t*\{((?:\w+="(?:[^"\\]|\\.)*"(?:, )?)*)\}\t*(.*)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def dry_run(
    stages: list[dict[str, Any]], labels: dict[str, str], lines: list[str], tmp: Path
) -> list[tuple[str, dict[str, str], str]]:
    """(timestamp, labels, line) for each line, from a real `promtail -stdin -dry-run`.

    Promtail's stdin mode runs the first scrape config's pipeline on lines carrying that
    config's static labels: here the labels the project's relabelling gives the job.
    """
    config = {
        "server": {"http_listen_port": 0, "grpc_listen_port": 0},
        "positions": {"filename": str(tmp / "positions.yaml")},
        "clients": [{"url": "http://127.0.0.1:9/loki/api/v1/push"}],
        "scrape_configs": [
            {
                "job_name": "dry-run",
                "static_configs": [{"targets": ["localhost"], "labels": labels}],
                "pipeline_stages": stages,
            }
        ],
    }
    path = tmp / "promtail-dry-run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    # Promtail may stop at the end of stdin before its last entries are printed, so stdin
    # stays open until every line has come out (or the deadline passes).
    errors = (tmp / "promtail-stderr.txt").open("w")
    proc = subprocess.Popen(
        [
            shared_tool("promtail"),
            f"-config.file={path}",
            "-config.expand-env=true",  # as compose and deploy run it: `$l` in templates stays
            "-stdin",
            "-dry-run",
            "-log.level=warn",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,  # apart: its lines would cut into the dry-run's on stdout
        text=True,
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write("\n".join(lines) + "\n")
    proc.stdin.flush()
    out: list[tuple[str, dict[str, str], str]] = []
    seen: list[str] = []
    timer = threading.Timer(30, proc.kill)
    timer.start()
    try:
        for row in proc.stdout:
            seen.append(row)
            m = DRY_RUN_LINE.match(row.rstrip("\n"))
            if m:
                out.append((m.group(1), dict(LABEL.findall(m.group(2))), m.group(3)))
            if len(out) == len(lines):
                break
    finally:
        timer.cancel()
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()
        errors.close()
    stderr = (tmp / "promtail-stderr.txt").read_text()
    assert [line for _, _, line in out] == lines, "".join(seen) + stderr
    return out


def compose_stages() -> list[dict[str, Any]]:
    (scrape,) = load("promtail/promtail-compose.yaml")["scrape_configs"]
    return list(scrape["pipeline_stages"])


def kept_services() -> str:
    (scrape,) = load("promtail/promtail-compose.yaml")["scrape_configs"]
    (keep,) = [r for r in scrape["relabel_configs"] if r.get("action") == "keep"]
    assert keep["source_labels"] == ["__meta_docker_container_label_com_docker_compose_service"]
    return str(keep["regex"])


def check_table(stages: list[dict[str, Any]], tmp: Path) -> None:
    by_job: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for job, line, extra in SERVICE_LINES:
        by_job.setdefault(job, []).append((line, extra))
    problems = []
    for job, cases in by_job.items():
        got = dry_run(stages, {"job": job, "host": "nas"}, [line for line, _ in cases], tmp)
        for (ts, labels, line), (_, extra) in zip(got, cases):
            want = {"job": job, "host": "nas", **extra}
            if labels != want:
                problems.append(f"{job}: {labels} != {want} for {line}")
            if job == "crawler":
                # The timestamp stage takes the crawler's own time, not the read time.
                written = json.loads(line)["time"]
                if not ts.startswith(written[:19]):
                    problems.append(f"crawler line stamped {ts}, written at {written}")
    assert not problems, "\n".join(problems)


def test_every_service_is_kept_by_the_compose_relabelling() -> None:
    services = set(load("compose.yaml")["services"])
    jobs = {job for job, _, _ in SERVICE_LINES}
    assert jobs <= services, jobs - services
    regex = kept_services()
    for name in services:
        assert re.fullmatch(regex, name), f"{name} is not shipped to Loki"
    assert not re.fullmatch(regex, "someone-elses-app")


def test_compose_pipeline_labels_every_service(tmp_path: Path) -> None:
    check_table(compose_stages(), tmp_path)


def test_pi_pipeline_labels_the_crawler(tmp_path: Path) -> None:
    jobs = {sc["job_name"]: sc for sc in load("promtail/promtail-pi.yaml")["scrape_configs"]}
    crawler = jobs["crawler"]
    assert crawler["journal"]["labels"] == {"job": "crawler"}
    assert crawler["relabel_configs"] == [
        {"source_labels": ["__journal__hostname"], "target_label": "host"}
    ]
    cases = [(line, extra) for job, line, extra in SERVICE_LINES if job == "crawler"]
    got = dry_run(
        crawler["pipeline_stages"],
        {"job": "crawler", "host": "pi"},
        [c[0] for c in cases],
        tmp_path,
    )
    for (_, labels, line), (_, extra) in zip(got, cases):
        assert labels == {"job": "crawler", "host": "pi", **extra}, line


def test_label_check_can_fail(tmp_path: Path) -> None:
    """The pipeline as it was: lower-case levels only, so Prometheus 3's ERROR got no level."""
    stages = compose_stages()
    stages[1]["match"]["stages"][1]["template"]["template"] = (
        '{{ if eq .Value "error" }}ERROR{{ else if eq .Value "warn" }}WARNING'
        '{{ else if eq .Value "info" }}INFO{{ else if eq .Value "debug" }}DEBUG{{ end }}'
    )
    with pytest.raises(AssertionError, match=r"prometheus: .* != .*'level': 'ERROR'"):
        check_table(stages, tmp_path)


# ----------------------------------------------------------------- Alloy


def alloy() -> list[alloy_config.Block]:
    return alloy_config.parse((ROOT / "alloy" / "config.alloy").read_text(encoding="utf-8"))


def test_alloy_parser_can_fail() -> None:
    with pytest.raises(ValueError, match="line 2"):
        alloy_config.parse('loki.write "x" {\n  url = = "y"\n}')


def test_alloy_process_is_the_promtail_pipeline(tmp_path: Path) -> None:
    stages = alloy_config.promtail_stages(alloy_config.component(alloy(), "loki.process", "logs"))
    assert stages == compose_stages()
    check_table(stages, tmp_path)


def test_alloy_ships_only_the_relabelled_containers() -> None:
    blocks = alloy()
    docker = alloy_config.component(blocks, "loki.source.docker", "containers")
    # Not discovery.docker's targets: those are every container, with no job or host.
    assert docker.attrs["targets"] == alloy_config.Ref("discovery.relabel.containers.output")
    relabel = alloy_config.component(blocks, "discovery.relabel", "containers")
    rules = [r.attrs for r in relabel.find("rule")]
    keep = [r for r in rules if r.get("action") == "keep"]
    assert [r["regex"] for r in keep] == [kept_services()]
    targets = {r["target_label"]: r for r in rules if "target_label" in r}
    assert set(targets) == {"job", "host"}
    assert targets["job"]["source_labels"] == [
        "__meta_docker_container_label_com_docker_compose_service"
    ]


def test_alloy_journal_sources_keep_their_job() -> None:
    blocks = alloy()
    for name, job in (("crawler", "crawler"), ("kernel", "kernel")):
        source = alloy_config.component(blocks, "loki.source.journal", name)
        assert source.attrs["labels"] == {"job": job}
    crawler = alloy_config.component(blocks, "loki.source.journal", "crawler")
    assert crawler.attrs["matches"] == "_SYSTEMD_UNIT=crawler.service"
    assert crawler.attrs["forward_to"] == [alloy_config.Ref("loki.process.logs.receiver")]
    relabel = alloy_config.component(blocks, "loki.relabel", "journal")
    labels = {r.attrs["target_label"] for r in relabel.find("rule")}
    assert labels == {"host", "level"}


def alloy_pin() -> str:
    text = (ROOT / "alloy" / "config.alloy").read_text(encoding="utf-8")
    m = re.search(
        r"^// Pinned: Grafana Alloy v(\d+\.\d+\.\d+) \(image grafana/alloy:v\1\)", text, re.M
    )
    assert m, "alloy/config.alloy must name the pinned Alloy release"
    return m.group(1)


def test_alloy_is_pinned_to_a_release_that_keeps_the_job_label() -> None:
    version = alloy_pin()
    assert version not in ALLOY_JOB_OVERWRITE, (
        f"Alloy {version} overwrites job (grafana/alloy#6980)"
    )
    for rel in ("docs/stack.md",):
        text = (ROOT / rel).read_text(encoding="utf-8")
        pins = set(re.findall(r"grafana/alloy:v(\d+\.\d+\.\d+)", text))
        assert pins == {version}, f"{rel} names Alloy {pins}, config.alloy {version}"


def test_alloy_labels_stay_bounded() -> None:
    labels: set[str] = set()

    def walk(blocks: list[alloy_config.Block]) -> None:
        for b in blocks:
            if "target_label" in b.attrs:
                labels.add(b.attrs["target_label"])
            if isinstance(b.attrs.get("labels"), dict):
                labels.update(b.attrs["labels"])
            if b.name == "stage.labels":
                labels.update(b.attrs["values"])
            walk(b.blocks)

    walk(alloy())
    assert labels == {"job", "host", "level", "source"}
