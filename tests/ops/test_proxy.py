"""The front door for real: Debian's Caddy, on 127.0.0.1, runs the repository's Caddyfile in
front of a real Prometheus, a real Alertmanager (the Debian packages' binaries) and a real
headless Chromium (Debian's `chromium`, its DevTools port on 127.0.0.1, as the compose service
`browser` serves it to a crawler on the Pi).

The user lists and passwords come from scripts/setup-secrets, run in a temporary folder, so the
test also proves that what the setup command writes is what Caddy accepts. Only what must change
outside Docker is rewritten: the upstreams' addresses, the listening ports, the secrets' paths,
and `basic_auth` spelled `basicauth` for Caddy 2.6. Loki does not run here (no Debian package);
an aiohttp stand-in on 127.0.0.1 takes its place and counts which paths reach it.

Clients verify the proxy's certificate against the root of Caddy's own local CA.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests import helpers
from tests.helpers import free_port, require, wait_for
from tests.nas import caddy_env, caddyfile_for_debian, setup_secrets
from tests.site import Site

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Front:
    ports: dict[str, int]  # service -> the proxy's port for it
    ca: ssl.SSLContext
    admin: str  # "user:password"
    push: str
    loki: Site
    alertmanager_port: int
    health_port: int
    browser: str  # the `crawler` account: user:password
    cdp_port: int  # Chromium's own DevTools port, behind the proxy
    ca_file: Path  # the root of Caddy's local CA (secrets/proxy-ca.crt on the NAS)


def up(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def request(
    front: Front,
    service: str,
    path: str,
    auth: str | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    url = f"https://localhost:{front.ports[service]}{path}"
    req = urllib.request.Request(url, data=body, method=method)
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10, context=front.ca) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    tmp = tmp_path_factory.mktemp("proxy")
    # Secrets as the NAS would have them.
    setup = setup_secrets(
        tmp,
        "GRAFANA_ADMIN_PASSWORD=unused\nSLACK_WEBHOOK_URL=https://hooks.slack.invalid/x\n"
        "PROXY_ADMIN_PASSWORD=admin-pw-for-tests\n",
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    secrets = tmp / "secrets"
    push_pw = (secrets / "loki_push_password.txt").read_text()

    browser_pw = (secrets / "browser_password.txt").read_text()
    prom_port, am_port, dead_port, cdp_port = free_port(), free_port(), free_port(), free_port()
    (tmp / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\n")
    (tmp / "alertmanager.yml").write_text("route:\n  receiver: none\nreceivers:\n  - name: none\n")
    procs: list[subprocess.Popen[bytes]] = []
    logs = []

    def start(name: str, cmd: list[str], extra_env: dict[str, str] | None = None) -> None:
        log = (tmp / f"{name}.log").open("wb")
        logs.append(log)
        procs.append(
            subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(extra_env or {})},
                cwd=tmp,
            )
        )

    async def pushed(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def queried(request: web.Request) -> web.Response:
        return web.json_response({"status": "success"})

    loki = Site()
    loki.app.router.add_post("/loki/api/v1/push", pushed)
    loki.app.router.add_get("/loki/api/v1/query_range", queried)
    loki.start()

    # The same flags as compose.yaml (no --web.enable-lifecycle), on 127.0.0.1.
    start(
        "prometheus",
        [
            require("prometheus"),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
    )
    start(
        "alertmanager",
        [
            require("prometheus-alertmanager"),
            f"--config.file={tmp / 'alertmanager.yml'}",
            f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
    )

    # Chromium as compose runs it (profile `browser`), on loopback. --no-sandbox: its sandbox
    # needs privileges a test (and the container) does not have; the container is the wall.
    start(
        "chromium",
        [
            require("chromium"),
            "--headless",
            "--no-sandbox",
            *services("compose.yaml")["browser"]["command"],
            "--remote-debugging-address=127.0.0.1",
            f"--remote-debugging-port={cdp_port}",
            f"--user-data-dir={tmp / 'chromium'}",
            "about:blank",
        ],
    )

    ports = {
        name: free_port() for name in ("grafana", "prometheus", "alertmanager", "loki", "browser")
    }
    health = free_port()
    text = caddyfile_for_debian()
    for name, usual in (("grafana", 3000), ("prometheus", 9090), ("alertmanager", 9093)):
        text = text.replace(f"}}:{usual}", f"}}:{ports[name]}")
    text = text.replace("}:3100", f"}}:{ports['loki']}")
    text = text.replace("}:9222", f"}}:{ports['browser']}")
    text = text.replace("127.0.0.1:8081", f"127.0.0.1:{health}")
    text = text.replace("reverse_proxy prometheus:9090", f"reverse_proxy 127.0.0.1:{prom_port}")
    text = text.replace("reverse_proxy alertmanager:9093", f"reverse_proxy 127.0.0.1:{am_port}")
    text = text.replace("reverse_proxy loki:3100", f"reverse_proxy 127.0.0.1:{loki.port}")
    text = text.replace("reverse_proxy grafana:3000", f"reverse_proxy 127.0.0.1:{dead_port}")
    text = text.replace("reverse_proxy browser:9222", f"reverse_proxy 127.0.0.1:{cdp_port}")
    text = text.replace("root * /srv/docs", f"root * {ROOT / 'docs'}")
    assert "prometheus:9090" not in text and "loki:3100" not in text and "browser:9222" not in text
    (tmp / "Caddyfile").write_text(text)
    start(
        "caddy",
        [require("caddy"), "run", "--config", str(tmp / "Caddyfile"), "--adapter", "caddyfile"],
        caddy_env(
            tmp,
            secrets / "proxy_users.txt",
            secrets / "loki_push_users.txt",
            name="localhost",
            address="127.0.0.1",
            browser_users=secrets / "browser_users.txt",
        ),
    )
    try:
        for port in (prom_port, am_port, cdp_port, *ports.values(), health):
            wait_for(lambda port=port: up(port), timeout=30)
        root = tmp / "caddy-data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        wait_for(root.exists, timeout=30)
        ca = ssl.create_default_context(cafile=str(root))
        f = Front(
            ports=ports,
            ca=ca,
            admin="admin:admin-pw-for-tests",
            push=f"promtail:{push_pw}",
            loki=loki,
            alertmanager_port=am_port,
            health_port=health,
            browser=f"crawler:{browser_pw}",
            cdp_port=cdp_port,
            ca_file=root,
        )

        def served() -> bool:
            try:
                return request(f, "prometheus", "/-/ready")[0] == 401
            except (ssl.SSLError, urllib.error.URLError, ConnectionError):
                return False  # the certificate is still being issued

        wait_for(served, timeout=30)
        yield f
    except BaseException:
        for log in logs:
            log.flush()
        for name in ("caddy", "prometheus", "alertmanager", "chromium"):
            print(f"--- {name}.log\n" + (tmp / f"{name}.log").read_text(errors="replace")[-3000:])
        raise
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        for log in logs:
            log.close()
        loki.stop()


def test_prometheus_needs_credentials_and_is_proxied_with_them(front: Front) -> None:
    status, _, headers = request(front, "prometheus", "/api/v1/status/buildinfo")
    assert status == 401 and headers.get("Www-Authenticate", "").startswith("Basic")
    assert request(front, "prometheus", "/api/v1/status/buildinfo", "admin:wrong")[0] == 401
    assert request(front, "prometheus", "/api/v1/status/buildinfo", front.push)[0] == 401
    status, body, _ = request(front, "prometheus", "/api/v1/status/buildinfo", front.admin)
    assert status == 200 and json.loads(body)["status"] == "success"
    # The lifecycle API: refused by the proxy, and off in the server behind it.
    assert request(front, "prometheus", "/-/quit", front.admin, method="POST", body=b"")[0] == 403
    assert request(front, "prometheus", "/-/ready", front.admin)[0] == 200


def test_alertmanager_needs_credentials_and_is_proxied_with_them(front: Front) -> None:
    assert request(front, "alertmanager", "/api/v2/status")[0] == 401
    silence = json.dumps(
        {
            "matchers": [{"name": "alertname", "value": ".*", "isRegex": True}],
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "2036-01-01T00:00:00Z",
            "createdBy": "intruder",
            "comment": "silence everything",
        }
    ).encode()
    assert request(front, "alertmanager", "/api/v2/silences", method="POST", body=silence)[0] == 401
    # Nothing got through: Alertmanager itself (asked directly) holds no silence.
    with urllib.request.urlopen(
        f"http://127.0.0.1:{front.alertmanager_port}/api/v2/silences", timeout=10
    ) as resp:
        assert json.loads(resp.read()) == []
    status, body, _ = request(front, "alertmanager", "/api/v2/status", front.admin)
    assert status == 200 and "config" in json.loads(body)
    assert (
        request(front, "alertmanager", "/-/reload", front.admin, method="POST", body=b"")[0] == 403
    )


def test_loki_takes_pushes_from_the_push_account_only(front: Front) -> None:
    push = b'{"streams": []}'
    assert request(front, "loki", "/loki/api/v1/push", method="POST", body=push)[0] == 401
    assert request(front, "loki", "/loki/api/v1/push", front.admin, "POST", push)[0] == 401
    before = front.loki.hits["/loki/api/v1/push"]
    assert request(front, "loki", "/loki/api/v1/push", front.push, "POST", push)[0] == 204
    assert front.loki.hits["/loki/api/v1/push"] == before + 1
    # Queries: the admin account, not the push one.
    assert request(front, "loki", "/loki/api/v1/query_range?query=x")[0] == 401
    assert request(front, "loki", "/loki/api/v1/query_range?query=x", front.push)[0] == 401
    assert request(front, "loki", "/loki/api/v1/query_range?query=x", front.admin)[0] == 200
    # Deletion and the other admin paths never reach Loki, whoever asks.
    for path in ("/loki/api/v1/delete", "/flush", "/config", "/loki/api/v1/rules"):
        assert request(front, "loki", path, front.admin, "POST", b"{}")[0] == 404
        assert front.loki.hits[path] == 0


def test_grafana_is_tls_only_and_keeps_its_own_login(front: Front) -> None:
    # No basic-auth challenge from the proxy; Grafana (absent here) would ask itself.
    status, _, headers = request(front, "grafana", "/login")
    assert status == 502 and "Www-Authenticate" not in headers
    # Plain HTTP on the proxy's port is not served.
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{front.ports['grafana']}/login", timeout=5
        ) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, ConnectionError):
        status = 0
    # Caddy answers plain HTTP on a TLS port with 400 (or drops it); never the page.
    assert status in (0, 400), status


def test_the_repository_docs_are_served_next_to_grafana(front: Front) -> None:
    """RUNBOOK_BASE_URL's default: alerts link to docs/runbooks.md through the proxy."""
    status, body, headers = request(front, "grafana", "/docs/runbooks.md")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert body == (ROOT / "docs" / "runbooks.md").read_bytes()


def test_health_route_is_plain_http_on_loopback(front: Front) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{front.health_port}/health", timeout=5) as r:
        assert r.status == 200


def services(rel: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / rel).read_text(encoding="utf-8"))["services"])


def test_the_browser_answers_the_crawler_account_only(front: Front) -> None:
    """Chromium's DevTools discovery through the proxy: the crawler's own account, nobody else's;
    the proxy's `Host: localhost` is what makes Chromium answer at all (it refuses other names)."""
    assert request(front, "browser", "/json/version")[0] == 401
    for other in (front.admin, front.push, "crawler:wrong"):
        assert request(front, "browser", "/json/version", other)[0] == 401
    status, body, _ = request(front, "browser", "/json/version", front.browser)
    assert status == 200, body
    version = json.loads(body)
    assert version["webSocketDebuggerUrl"].startswith("ws://localhost/devtools/browser/")
    # The rest of Chromium's HTTP API is not proxied, whoever asks: no tabs opened or closed.
    for path, method in (("/json/new?about:blank", "PUT"), ("/json/list", "GET"), ("/", "GET")):
        assert request(front, "browser", path, front.browser, method)[0] == 404, path


def test_a_devtools_session_runs_through_the_proxy(front: Front) -> None:
    """What a crawler on the Pi does: read the WebSocket URL, put the proxy's address in it,
    open it with the account over TLS, and drive the browser; without the password, no upgrade."""
    _, body, _ = request(front, "browser", "/json/version", front.browser)
    path = urllib.parse.urlsplit(json.loads(body)["webSocketDebuggerUrl"]).path
    url = f"wss://localhost:{front.ports['browser']}{path}"
    authorization = {"Authorization": "Basic " + base64.b64encode(front.browser.encode()).decode()}

    async def drive() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url, ssl=front.ca)
            assert refused.value.status == 401
            async with session.ws_connect(
                url,
                ssl=front.ca,
                headers=authorization,
                timeout=aiohttp.ClientWSTimeout(ws_close=10),
            ) as ws:
                await ws.send_json({"id": 1, "method": "Browser.getVersion"})
                answer = await ws.receive_json(timeout=10)
                return dict(answer)

    answer = asyncio.run(drive())
    assert answer["id"] == 1
    assert "Chrome/" in answer["result"]["product"]


# Run in a process of its own: aiohttp builds its default TLS context when it is imported, from
# the trust store as the process starts (as the crawler's would on the Pi).
DRIVE_BROWSER = """
import asyncio, sys
from prometheus_client import CollectorRegistry
from crawler.config.root import load_config
from crawler.observability.metrics import Metrics
from crawler.render.browser import Browser

async def main():
    metrics = Metrics(CollectorRegistry())
    async with Browser(load_config(sys.argv[1]).browser, metrics) as browser:
        conn = await browser.connection()
        version = await conn.call("Browser.getVersion", timeout=10)
        print(version["product"], metrics.registry.get_sample_value("crawler_browser_up"))

asyncio.run(main())
"""


def test_the_crawlers_browser_client_works_through_the_proxy(front: Front, tmp_path: Path) -> None:
    """A crawler on the Pi as docs/security.md (*The Pi*) sets it up: the crawler's own `Browser`
    part with `endpoint: https://NAS:9222`, the `crawler` account's password from a file, and the
    proxy's CA added to the trust store (`update-ca-certificates` on the Pi; here a bundle of the
    system's roots and the proxy's, as SSL_CERT_FILE). It connects, drives the browser through
    the proxy and reports it up; without the proxy's root it cannot connect."""
    password = tmp_path / "browser_password"
    password.write_text(front.browser.split(":", 1)[1])
    cfg = helpers.write_config(
        tmp_path,
        browser={
            "endpoint": f"https://localhost:{front.ports['browser']}",
            "basic_user": "crawler",
            "password_file": str(password),
        },
        sources=[
            {
                "name": "spa",
                "every": "1h",
                "urls": ["http://127.0.0.1:9/"],
                "render": {},
                "items": "div",
                "fields": {"a": "a::text"},
            }
        ],
    )
    system = Path(ssl.get_default_verify_paths().openssl_cafile)
    bundle = tmp_path / "ca-certificates.crt"
    bundle.write_text((system.read_text() if system.is_file() else "") + front.ca_file.read_text())

    def drive(cafile: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", DRIVE_BROWSER, str(cfg)],
            env={**os.environ, "SSL_CERT_FILE": str(cafile), "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )

    trusted = drive(bundle)
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    product, up = trusted.stdout.split()
    assert product.startswith(("Chrome/", "HeadlessChrome/")) and float(up) == 1
    untrusted = drive(system)
    assert untrusted.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


def test_the_compose_healthcheck_asks_chromium_as_it_answers(front: Front) -> None:
    """compose.yaml's healthcheck of the browser, run against a real Chromium (9222 made the
    test's port): HTTP/1.1 and Host localhost, or Chromium refuses it."""
    command = services("compose.yaml")["browser"]["healthcheck"]["test"]
    assert command[:3] == ["CMD", "bash", "-c"]
    script = command[3].replace("/127.0.0.1/9222", f"/127.0.0.1/{front.cdp_port}")
    assert script != command[3]
    ok = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    # The same request as HTTP/1.0 (what a shorter healthcheck would send) fails: the check can.
    old = subprocess.run(
        ["bash", "-c", script.replace("HTTP/1.1", "HTTP/1.0")], capture_output=True, timeout=10
    )
    assert old.returncode != 0
