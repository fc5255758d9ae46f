"""The crawler's /metrics behind basic auth and TLS (crawler/observability/webauth.py), scraped by a real
Prometheus that sends the password and trusts the certificate, as the NAS's does."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt

from tests.crawler_proc import CrawlerProcess
from tests.helpers import free_port, require, self_signed_certificate, wait_for
from tests.site import Site

PASSWORD = "scrape-pw-for-tests"


def get(url: str, ca: Path, auth: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_ask_for_a_password_over_tls_and_prometheus_scrapes_them(
    tmp_path: Path, site: Site
) -> None:
    cert, key = self_signed_certificate(tmp_path, "metrics")
    web = tmp_path / "web-config.yml"
    # Cost 4 keeps the test quick; the installed files use 12-14.
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    port = free_port()
    cfg = tmp_path / "crawler.yaml"
    cfg.write_text(f"""\
state_dir: {tmp_path}/var
metrics:
  listen: 127.0.0.1:{port}
  basic_auth: {web}
  tls: {{cert_file: {cert}, key_file: {key}}}
fetch: {{politeness_delay: 0s, robots: false}}
sources:
  - name: s
    every: 1h
    url: "{site.base}/page/0"
    items: div.quote
    fields: {{text: span.text::text}}
""")
    crawler = CrawlerProcess(cfg, tmp_path / "crawler.log")
    prom_port = free_port()
    prometheus: subprocess.Popen[bytes] | None = None
    base = f"https://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/healthz", cert), timeout=60)
        assert get(f"{base}/healthz", cert) == (200, "ok\n")  # open: local health checks
        status, _ = get(f"{base}/metrics", cert)
        assert status == 401
        assert get(f"{base}/metrics", cert, "prometheus:wrong")[0] == 401
        # Open for probes (deploy/release polls it without credentials after an upgrade).
        assert get(f"{base}/readyz", cert)[0] in (200, 503)
        status, body = get(f"{base}/metrics", cert, f"prometheus:{PASSWORD}")
        assert status == 200 and "crawler_up" in body
        # Plain HTTP on the TLS port gets nothing.
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                plain = r.status
        except (urllib.error.URLError, ConnectionError) as exc:
            plain = getattr(exc, "code", 0)
        assert plain in (0, 400)

        (tmp_path / "password").write_text(PASSWORD)
        (tmp_path / "wrong").write_text("wrong")
        job = {
            "scheme": "https",
            "tls_config": {"ca_file": str(cert)},
            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
        }
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "crawler",
                    "basic_auth": {
                        "username": "prometheus",
                        "password_file": str(tmp_path / "password"),
                    },
                    **job,
                },
                {
                    "job_name": "wrong",
                    "basic_auth": {
                        "username": "prometheus",
                        "password_file": str(tmp_path / "wrong"),
                    },
                    **job,
                },
            ],
        }
        (tmp_path / "prometheus.yml").write_text(json.dumps(config))
        prometheus = subprocess.Popen(
            [
                require("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=os.environ,
        )

        def targets() -> dict[str, dict[str, str]] | None:
            try:
                url = f"http://127.0.0.1:{prom_port}/api/v1/targets"
                with urllib.request.urlopen(url, timeout=5) as r:
                    active = json.loads(r.read())["data"]["activeTargets"]
            except (OSError, ValueError):
                return None
            found = {t["labels"]["job"]: t for t in active}
            if all(found.get(j, {}).get("health") in ("up", "down") for j in ("crawler", "wrong")):
                return found
            return None

        found = wait_for(targets, timeout=60, interval=0.5)
        assert isinstance(found, dict)
        assert found["crawler"]["health"] == "up", found["crawler"]
        assert found["wrong"]["health"] == "down" and "401" in found["wrong"]["lastError"]
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(10)
        assert crawler.stop() == 0


def _answers(url: str, ca: Path) -> bool:
    try:
        return get(url, ca)[0] == 200
    except (urllib.error.URLError, ConnectionError, ssl.SSLError):
        return False
