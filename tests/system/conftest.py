"""The system tier's one installed Pi: a booted Debian (tests/system/machine.py) with this
checkout installed by `deploy/install` as the README tells a user, against a NAS on the host's
127.0.0.1 (PostgreSQL set up as the NAS's image does, TLS `verify-full`; a real Loki).

Every service inside listens on 127.0.0.1 only: the crawler (`metrics.listen` in the
crawler.yaml put in place before the install, which keeps it), node_exporter (`ARGS` in
/etc/default/prometheus-node-exporter) and Promtail (promtail-pi.yaml). Promtail is a binary
put in place first, with a unit like the one Grafana's package ships: Grafana's APT
repository cannot be reached from here, and the install uses a promtail binary it finds
instead of the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import pytest

from tests.helpers import free_port, shared_tool, wait_for
from tests.nas import Secured, secured_postgres
from tests.ops.test_alerting_e2e import Processes, http_ok
from tests.ops.test_logs_e2e import loki_config
from tests.site import Site
from tests.system.machine import Machine, tarball

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = "/root/pi-crawler"
METRICS_USER, METRICS_PASSWORD = "prometheus", "pi-metrics-password-for-tests"
# What a snapshot of the machine compares, before the install and after `uninstall --purge`:
# everything but the kernel's and the package manager's own trees and the runtime folders.
SNAPSHOT = (
    "find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp "
    "-o -path /var/tmp -o -path /root -o -path /var/lib/apt -o -path /var/lib/dpkg "
    "-o -path /var/cache -o -path /var/log -o -path /var/lib/systemd "
    "-o -path /usr/lib/python3.11 -o -path /usr/lib/python3 \\) -prune -o -print | sort; "
    "echo '--- packages'; dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' | sort; "
    "echo '--- users'; getent passwd | cut -d: -f1 | sort; "
    "echo '--- groups'; getent group | cut -d: -f1 | sort"
)
PROMTAIL_UNIT = """\
# As Grafana's promtail package ships it (a stand-in: its repository is out of reach here).
[Unit]
Description=Promtail service
After=network.target

[Service]
Type=simple
User=promtail
ExecStart=/usr/bin/promtail -config.file /etc/promtail/config.yml
TimeoutSec=60
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target

[Service]
# Not the package's: Promtail's port on the host's 127.0.0.1, free for this machine.
"""


@dataclass
class Pi:
    """The installed machine and what the tests need to reach it."""

    machine: Machine
    nas: Secured
    site: Site
    loki: str
    crawler_port: int
    node_port: int
    install_seconds: float
    install_output: str
    snapshot: str
    started: float = field(default_factory=time.monotonic)
    notes: list[str] = field(default_factory=list)

    @property
    def metrics(self) -> str:
        return f"http://127.0.0.1:{self.crawler_port}"

    def install(
        self, checkout: str = CHECKOUT, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """`deploy/install` from `checkout` inside the machine, as the README tells a user."""
        environ = {"CRAWLER_READY_URL": f"{self.metrics}/readyz", **env}
        return self.machine.run(
            f"cd {checkout} && deploy/install --loki-url {self.loki} "
            "--secrets /root/nas-secrets --nas 127.0.0.1",
            env=environ,
            check=check,
            timeout=600,
        )

    def copy_checkout(self, dest: str) -> None:
        """This checkout's files (tracked and new, not ignored) to `dest` inside the machine."""
        files = subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        target = self.machine.path(dest)
        target.mkdir(parents=True, exist_ok=True)
        pack = subprocess.Popen(
            ["tar", "-C", str(ROOT), "--null", "-T", "-", "-cf", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        unpack = subprocess.Popen(["tar", "-C", str(target), "-xf", "-"], stdin=pack.stdout)
        assert pack.stdin is not None and pack.stdout is not None
        pack.stdin.write(files)
        pack.stdin.close()
        pack.stdout.close()
        assert unpack.wait(120) == 0 and pack.wait(120) == 0

    def get(self, url: str, auth: bool = False) -> tuple[int, str]:
        """(status, body) of a GET from the host (the machine shares its network)."""
        request = urllib.request.Request(url)
        if auth:
            creds = f"{METRICS_USER}:{METRICS_PASSWORD}".encode()
            import base64

            request.add_header("Authorization", "Basic " + base64.b64encode(creds).decode())
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def answer(self, url: str) -> int:
        """The status of a GET, 0 while nothing listens yet (a service just (re)started)."""
        try:
            return self.get(url)[0]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0


def _secrets(folder: Path, nas: Secured) -> None:
    """The files a user copies from the NAS's secrets/ (docs/security.md, "The Pi")."""
    folder.mkdir()
    (folder / "crawler_db_password.txt").write_text(nas.password("crawler"))
    hashed = bcrypt.hashpw(METRICS_PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    (folder / "metrics_web_config.yml").write_text(
        f"basic_auth_users:\n  {METRICS_USER}: '{hashed}'\n"
    )
    (folder / "loki_push_password.txt").write_text("push-password-for-tests")
    shutil.copy(nas.ca, folder / "postgres-ca.crt")
    shutil.copy(nas.ca, folder / "proxy-ca.crt")  # Loki is plain HTTP here; any CA file does


def _crawler_yaml(nas: Secured, site: Site, port: int) -> str:
    return f"""\
# The user's configuration (docs/pi.md: edit sources and storage.dsn), in place before the
# install, which keeps it.
instance: pi-system-test
log_level: INFO
state_dir: /var/lib/crawler
metrics:
  listen: 127.0.0.1:{port}
  basic_auth: /etc/crawler/web-config.yml
storage:
  dsn: postgresql://crawler@127.0.0.1:{nas.server.port}/crawler
  password_file: /etc/crawler/db_password
  sslmode: verify-full
  sslrootcert: /etc/crawler/postgres-ca.crt
fetch: {{politeness_delay: 0s, robots: false}}
sources:
  - name: quotes
    every: 1h
    urls: ["{site.base}/page/{{0..2}}"]
    items: div.quote
    fields: {{text: span.text::text, author: small.author::text}}
    key: [text]
"""


@pytest.fixture(scope="module")
def pi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pi]:
    if os.geteuid() != 0:
        pytest.fail("the system tier boots a Debian with systemd: run it as root")
    promtail_bin, loki_bin = shared_tool("promtail"), shared_tool("loki")
    work = tmp_path_factory.mktemp("pi")
    image = tarball()
    site = Site().start()
    procs = Processes(work)
    (work / "loki").mkdir()
    loki_port = free_port()
    loki_yaml = loki_config(work / "loki", loki_port, free_port(), free_port())
    procs.start("loki", [loki_bin, f"-config.file={loki_yaml}", "-config.expand-env=true"])
    loki = f"http://127.0.0.1:{loki_port}"
    try:
        with secured_postgres() as nas, Machine(work, image) as machine:
            crawler_port, node_port = free_port(), free_port()
            # What the user has before the install: the NAS's files, their crawler.yaml,
            # node_exporter on 127.0.0.1, Promtail put in place.
            _secrets(machine.path("/root/nas-secrets"), nas)
            machine.path("/etc/default/prometheus-node-exporter").write_text(
                f'ARGS="--web.listen-address=127.0.0.1:{node_port}"\n'
            )
            shutil.copy(promtail_bin, machine.path("/usr/bin/promtail"))
            machine.path("/etc/systemd/system/promtail.service").write_text(
                PROMTAIL_UNIT + f"Environment=PROMTAIL_HTTP_PORT={free_port()}\n"
            )
            machine.run(
                "useradd --system --no-create-home --shell /usr/sbin/nologin promtail && "
                "systemctl daemon-reload && systemctl restart prometheus-node-exporter"
            )
            snapshot = machine.run(SNAPSHOT).stdout
            etc = machine.path("/etc/crawler")
            etc.mkdir()
            (etc / "crawler.yaml").write_text(_crawler_yaml(nas, site, crawler_port))
            pi = Pi(machine, nas, site, loki, crawler_port, node_port, 0.0, "", snapshot)
            pi.copy_checkout(CHECKOUT)
            wait_for(lambda: procs.check_alive() or http_ok(f"{loki}/ready"), 60, 0.3)
            began = time.monotonic()
            done = pi.install()
            pi.install_seconds = time.monotonic() - began
            pi.install_output = done.stdout + done.stderr
            pi.started = time.monotonic()
            yield pi
            print(
                f"--- notes\n{chr(10).join(pi.notes)}\n--- systemd console\n{machine.journal_tail()}"
            )
    finally:
        procs.stop()
        site.stop()
