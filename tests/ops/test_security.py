"""The NAS side's exposure, checked from the files (docs/security.md).

Only the proxy and PostgreSQL publish ports; the proxy's configuration passes Debian's
`caddy validate`, and every route to an admin API asks for credentials (read from the
configuration Caddy itself adapts to JSON); Prometheus has no lifecycle API; Loki cannot
delete; the database roles are not superusers and have exactly their grants; Grafana reads as
`grafana_reader`; the secrets setup writes private files; the image's lock covers pyproject.
The real proxy in front of real servers is tests/ops/test_proxy.py; the roles on a real
PostgreSQL are tests/integration/test_pg_roles.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import require
from tests.nas import caddy, caddy_env, caddyfile_for_debian, setup_secrets

ROOT = Path(__file__).resolve().parents[2]
ROLES_SCRIPT = ROOT / "postgres" / "init" / "10-roles.sh"
TLS_SCRIPT = ROOT / "postgres" / "init" / "20-tls.sh"
ROLES = {"crawler", "grafana_reader", "exporter", "pipeline_reader"}
# The proxy's ports: the service behind each, and whether the proxy itself asks for a password.
PROXIED = {
    3000: ("grafana", False),
    9090: ("prometheus", True),
    9093: ("alertmanager", True),
    9222: ("browser", True),
}


def load_yaml(rel: str) -> Any:
    return yaml.safe_load((ROOT / rel).read_text(encoding="utf-8"))


def env_for(tmp: Path) -> dict[str, str]:
    """Caddy's environment, with one user list (a syntactically valid bcrypt hash) for both."""
    (tmp / "users.txt").write_text("admin $2a$14$" + "a" * 53)
    return caddy_env(tmp, tmp / "users.txt", tmp / "users.txt")


# ----------------------------------------------------------------- ports


def test_only_the_proxy_and_postgres_publish_ports() -> None:
    services = load_yaml("compose.yaml")["services"]
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"proxy", "postgres"}
    proxy_ports = {int(str(p).split(":")[-1]) for p in services["proxy"]["ports"]}
    assert proxy_ports == {3000, 9090, 9093, 3100, 9222}
    for name, svc in services.items():
        assert "expose" not in svc or name == "proxy"
        if svc.get("network_mode") == "host":
            # Its port is on the LAN without being published: only node_exporter, which
            # sees the host's interfaces there, and only behind a password.
            assert name == "node-exporter", f"{name} would bypass the published ports"
            assert "--web.config.file=/run/secrets/metrics_web_config" in svc["command"]
            assert svc["secrets"] == ["metrics_web_config"]


def test_prometheus_has_no_lifecycle_api() -> None:
    for rel in ("compose.yaml", "compose.pi.yaml", "deploy/install", "Dockerfile"):
        text = (ROOT / rel).read_text(encoding="utf-8")
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert "--web.enable-lifecycle" not in code, rel
        assert "--web.enable-admin-api" not in code, rel


def test_loki_cannot_delete() -> None:
    cfg = load_yaml("loki/loki.yaml")
    assert cfg["limits_config"]["deletion_mode"] == "disabled"


# ----------------------------------------------------------------- the proxy


@pytest.fixture
def adapted(tmp_path: Path) -> dict[str, Any]:
    """The Caddyfile as Caddy's own JSON (`caddy adapt`), from Debian's Caddy."""
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(caddyfile_for_debian())
    result = caddy("adapt", caddyfile, env_for(tmp_path))
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_caddy_validates_the_caddyfile(tmp_path: Path) -> None:
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(caddyfile_for_debian())
    result = caddy("validate", caddyfile, env_for(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


def test_caddy_validate_catches_a_broken_caddyfile(tmp_path: Path) -> None:
    caddyfile = tmp_path / "Caddyfile"
    broken = caddyfile_for_debian().replace("reverse_proxy prometheus", "reverse_prox prometheus")
    caddyfile.write_text(broken)
    assert caddy("validate", caddyfile, env_for(tmp_path)).returncode != 0


def handlers(route: dict[str, Any]) -> list[dict[str, Any]]:
    """The handlers of a route, subroutes flattened in order."""
    out: list[dict[str, Any]] = []
    for h in route.get("handle", []):
        if h["handler"] == "subroute":
            for sub in h["routes"]:
                out += handlers(sub)
        else:
            out.append(h)
    return out


def proxy_chains(
    routes: list[dict[str, Any]], before: tuple[dict[str, Any], ...] = ()
) -> list[list[dict[str, Any]]]:
    """Every way to a reverse_proxy handler, as the handlers that surely ran before it.

    Routes in a list run in order; a route without a matcher always runs, so its handlers
    come before everything after it; a route with a matcher counts only on its own path.
    """
    found: list[list[dict[str, Any]]] = []
    always = list(before)
    for route in routes:
        ran = list(always)
        for h in route.get("handle", []):
            if h["handler"] == "subroute":
                found += proxy_chains(h["routes"], tuple(ran))
            elif h["handler"] == "reverse_proxy":
                found.append([*ran, h])
            else:
                ran.append(h)
        if not route.get("match"):
            always = ran
    return found


def servers_by_port(adapted: dict[str, Any]) -> dict[int, dict[str, Any]]:
    out = {}
    for server in adapted["apps"]["http"]["servers"].values():
        for listen in server["listen"]:
            out[int(listen.rsplit(":", 1)[1])] = server
    return out


def test_every_admin_route_through_the_proxy_needs_credentials(adapted: dict[str, Any]) -> None:
    """Every path to Prometheus, Alertmanager, Loki or the browser passes an authentication
    handler first."""
    servers = servers_by_port(adapted)
    assert set(servers) == {3000, 9090, 9093, 3100, 9222, 8081}
    for port, server in servers.items():
        upstreams_seen = set()
        for chain in proxy_chains(server["routes"]):
            dial = chain[-1]["upstreams"][0]["dial"]
            upstreams_seen.add(dial)
            authed = any(h["handler"] == "authentication" for h in chain[:-1])
            if dial.startswith("grafana:"):
                assert not authed, "Grafana keeps its own login; no second prompt"
            else:
                assert authed, f"port {port}: {dial} is reachable without credentials"
        if port in PROXIED:
            assert upstreams_seen == {f"{PROXIED[port][0]}:{port}"}
        elif port == 3100:
            assert upstreams_seen == {"loki:3100"}
        else:
            assert upstreams_seen == set(), "the health route proxies nothing"


def test_the_proxy_serves_only_https_with_its_own_ca(adapted: dict[str, Any]) -> None:
    servers = servers_by_port(adapted)
    for port in (3000, 9090, 9093, 3100, 9222):
        assert "automatic_https" not in servers[port] or not servers[port]["automatic_https"].get(
            "disable"
        )
    policies = adapted["apps"]["tls"]["automation"]["policies"]
    assert all(p["issuers"][0]["module"] == "internal" for p in policies)
    names = {s for p in policies for s in p.get("subjects", [])}
    assert {"nas.example", "192.0.2.10"} <= names
    # The health route is plain HTTP on the container's loopback only.
    health = servers[8081]
    assert health["listen"] == ["127.0.0.1:8081"]
    assert "admin" in adapted and adapted["admin"]["disabled"] is True


def test_loki_exposes_only_push_and_query_paths(adapted: dict[str, Any]) -> None:
    server = servers_by_port(adapted)[3100]
    proxied_paths: set[str] = set()

    def walk(route: dict[str, Any]) -> None:
        paths = [p for m in route.get("match", []) for p in m.get("path", [])]
        hs = handlers(route)
        if any(h["handler"] == "reverse_proxy" for h in hs):
            proxied_paths.update(paths)
        for h in route.get("handle", []):
            if h["handler"] == "subroute":
                for sub in h["routes"]:
                    walk(sub)

    for route in server["routes"]:
        walk(route)
    assert "/loki/api/v1/push" in proxied_paths
    assert {"/loki/api/v1/query", "/loki/api/v1/query_range"} <= proxied_paths
    for path in proxied_paths:
        assert not re.search(r"delete|flush|shutdown|config|rules|compactor", path), path


def test_browser_exposes_only_the_devtools_connection(tmp_path: Path) -> None:
    """Port 9222 passes /json/version and the WebSocket paths, as Host localhost, to the browser's
    own account; the rest of Chromium's HTTP API (/json/new, /json/close, ...) is not proxied."""
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(caddyfile_for_debian())
    (tmp_path / "browser_users.txt").write_text("crawler $2a$14$" + "b" * 53)
    env = env_for(tmp_path) | {"BROWSER_USERS_FILE": str(tmp_path / "browser_users.txt")}
    result = caddy("adapt", caddyfile, env)
    assert result.returncode == 0, result.stderr
    servers = servers_by_port(json.loads(result.stdout))
    server = servers[9222]
    proxied: list[tuple[list[str], dict[str, Any], list[dict[str, Any]]]] = []

    def walk(route: dict[str, Any], matched: list[str], before: list[dict[str, Any]]) -> None:
        paths = matched + [p for m in route.get("match", []) for p in m.get("path", [])]
        ran = list(before)
        for h in route.get("handle", []):
            if h["handler"] == "subroute":
                for sub in h["routes"]:
                    walk(sub, paths, ran)
            elif h["handler"] == "reverse_proxy":
                proxied.append((paths, h, ran))
            else:
                ran.append(h)

    for route in server["routes"]:
        walk(route, [], [])
    assert proxied, "nothing reaches the browser"
    for paths, handler, ran in proxied:
        assert sorted(paths) == ["/devtools/browser/*", "/devtools/page/*", "/json/version"]
        assert handler["headers"]["request"]["set"]["Host"] == ["localhost"]
        (auth,) = [h for h in ran if h["handler"] == "authentication"]
        # Its own user list: the admin account cannot drive the browser.
        accounts = auth["providers"]["http_basic"]["accounts"]
        assert [a["username"] for a in accounts] == ["crawler"]
    # ... nor the crawler's account reach anything else.
    for port in (9090, 9093):
        for chain in proxy_chains(servers[port]["routes"]):
            for h in chain:
                if h["handler"] == "authentication":
                    names = [a["username"] for a in h["providers"]["http_basic"]["accounts"]]
                    assert names == ["admin"], (port, names)


# ----------------------------------------------------------------- PostgreSQL roles


def roles_sql() -> str:
    text = ROLES_SCRIPT.read_text(encoding="utf-8")
    sql = text.split("<<'SQL'", 1)[1].split("\nSQL\n", 1)[0]
    return re.sub(r"--[^\n]*", "", sql)


def test_roles_are_not_superusers_and_cannot_make_roles() -> None:
    sql = roles_sql()
    alters = {
        m.group(1): m.group(2) for m in re.finditer(r"ALTER ROLE (\w+) WITH (.*?);", sql, re.S)
    }
    assert set(alters) == ROLES
    for attrs in alters.values():
        words = set(attrs.split())
        assert {"NOSUPERUSER", "NOCREATEROLE", "NOCREATEDB", "NOREPLICATION", "LOGIN"} <= words
        assert not words & {"SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS"}
    assert not re.search(r"\bSUPERUSER\b(?<!NOSUPERUSER)", sql.replace("NOSUPERUSER", ""))


def test_roles_have_exactly_their_grants() -> None:
    sql = " ".join(roles_sql().split())
    # The backup role's grant is built by format() (checked below), not a GRANT statement.
    backup_grant = "SELECT format('GRANT CONNECT ON DATABASE %I TO backup', :'db')"
    assert backup_grant in sql
    sql = re.sub(r"SELECT format\('GRANT .*?\\gexec", "", sql)
    grants = set(re.findall(r"(?:ALTER DEFAULT PRIVILEGES [^;]*? )?GRANT [^;]*;", sql))
    assert grants == {
        'GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO crawler;',
        'GRANT CONNECT ON DATABASE :"db" TO grafana_reader, pipeline_reader, exporter;',
        "GRANT USAGE, CREATE ON SCHEMA public TO crawler;",
        "GRANT USAGE ON SCHEMA public TO grafana_reader, pipeline_reader;",
        "ALTER DEFAULT PRIVILEGES FOR ROLE crawler IN SCHEMA public "
        "GRANT SELECT ON TABLES TO grafana_reader, pipeline_reader;",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana_reader, pipeline_reader;",
        "GRANT pg_monitor TO exporter;",
    }
    assert "REVOKE ALL ON DATABASE" in sql and "REVOKE ALL ON SCHEMA public FROM PUBLIC" in sql


def test_init_scripts_are_executable_and_shellcheck_clean() -> None:
    for script in (ROLES_SCRIPT, TLS_SCRIPT):
        assert os.access(script, os.X_OK), f"{script.name}: the image sources non-executables"
        proc = subprocess.run(
            [require("shellcheck"), "--severity=style", str(script)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stdout
    # Passwords reach psql through its environment, never its argument list.
    assert ":'crawler_pw'" in ROLES_SCRIPT.read_text() and "-v crawler_pw" not in (
        ROLES_SCRIPT.read_text()
    )


def test_tls_script_allows_network_logins_only_over_tls() -> None:
    text = TLS_SCRIPT.read_text(encoding="utf-8")
    hba = text.split("<<'HBA'", 1)[1].split("\nHBA\n", 1)[0]
    lines = [ln.split() for ln in hba.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines == [
        ["hostssl", "all", "postgres", "all", "reject"],
        ["hostssl", "all", "all", "all", "scram-sha-256"],
    ]
    assert "ALTER SYSTEM SET ssl = on" in text


def test_grafana_reads_postgres_as_the_reader_role() -> None:
    ds = {
        d["uid"]: d
        for d in load_yaml("grafana/provisioning/datasources/datasources.yaml")["datasources"]
    }
    pg = ds["postgres"]
    assert pg["user"] == "grafana_reader"
    assert pg["secureJsonData"]["password"] == "$__file{/run/secrets/grafana_db_password}"
    assert pg["jsonData"]["sslmode"] != "disable"


# ----------------------------------------------------------------- secrets


def test_setup_secrets_writes_private_files_from_env(tmp_path: Path) -> None:
    dotenv = (
        "GRAFANA_ADMIN_PASSWORD=g-pw\n"
        "SLACK_WEBHOOK_URL='https://hooks.slack.invalid/T0/B0/x'\n"
        "PROXY_ADMIN_PASSWORD=p$w\n"
    )
    first = setup_secrets(tmp_path, dotenv)
    assert first.returncode == 0, first.stdout + first.stderr
    secrets = tmp_path / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    names = {p.stem for p in secrets.iterdir()}
    web = yaml.safe_load((secrets / "metrics_web_config.yml").read_text())
    assert list(web["basic_auth_users"]) == ["prometheus"]
    compose_names = set(load_yaml("compose.yaml")["secrets"])
    assert compose_names <= names
    for p in secrets.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
        if p.suffix == ".txt":
            assert p.read_text() and not p.read_text().endswith("\n"), p.name
    assert (secrets / "slack_webhook_url.txt").read_text() == "https://hooks.slack.invalid/T0/B0/x"
    assert (secrets / "proxy_admin_password.txt").read_text() == "p$w"
    made = (secrets / "crawler_db_password.txt").read_text()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", made)
    assert made != (secrets / "grafana_db_password.txt").read_text()
    user, hashed = (secrets / "proxy_users.txt").read_text().split()
    assert user == "admin" and hashed.startswith("$2")
    # No value is printed.
    for p in secrets.iterdir():
        assert p.read_text() not in first.stdout + first.stderr
    # A second run keeps every file.
    before = {p.name: p.read_text() for p in secrets.iterdir()}
    second = setup_secrets(tmp_path, dotenv)
    assert second.returncode == 0, second.stderr
    assert {p.name: p.read_text() for p in secrets.iterdir()} == before
    # Without .env and without a terminal, what a person must choose is an error, not a default.
    shutil.rmtree(secrets)
    third = setup_secrets(tmp_path, None)
    assert third.returncode != 0 and "no terminal" in third.stderr


def test_hash_password_never_takes_the_password_as_an_argument() -> None:
    text = (ROOT / "scripts" / "hash-password").read_text(encoding="utf-8")
    assert "--plaintext" not in text
    result = subprocess.run(
        [str(ROOT / "scripts" / "hash-password")],
        input="correct horse\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}\n", result.stdout)


# ----------------------------------------------------------------- supply chain


def test_requirements_lock_covers_pyproject_with_hashes() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    pinned = {
        m.group(1).lower().replace("_", "-"): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", lock, re.M)
    }
    for dep in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", dep)
        assert name is not None
        key = name.group(0).lower().replace("_", "-")
        assert key in pinned, f"{key} is not in requirements.lock: run scripts/lock"
    # Every pinned package carries at least one hash (pip refuses the file otherwise).
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", lock.split("\n", 2)[2])
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]


def test_node_exporter_asks_for_the_password_setup_secrets_made(tmp_path: Path) -> None:
    """A real node_exporter with the web config scripts/setup-secrets wrote: 401, then 200."""
    import base64
    import urllib.error
    import urllib.request

    from tests.helpers import free_port, wait_for

    assert (
        setup_secrets(
            tmp_path, "GRAFANA_ADMIN_PASSWORD=g\nSLACK_WEBHOOK_URL=s\nPROXY_ADMIN_PASSWORD=p\n"
        ).returncode
        == 0
    )
    secrets = tmp_path / "secrets"
    port = free_port()
    proc = subprocess.Popen(
        [
            require("prometheus-node-exporter"),
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.config.file={secrets / 'metrics_web_config.yml'}",
            "--collector.disable-defaults",
            "--collector.time",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def status(auth: str | None) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
        if auth:
            req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    try:
        wait_for(lambda: status(None), timeout=20)
        password = (secrets / "pi_metrics_password.txt").read_text()
        assert status(None) == 401
        assert status("prometheus:wrong") == 401
        assert status(f"prometheus:{password}") == 200
    finally:
        proc.terminate()
        proc.wait(10)
