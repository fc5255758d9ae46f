"""deploy/release: upgrades switch releases, are health-checked on /readyz and roll back.

Real script, real symlinks and files in a temporary prefix, a real HTTP readiness endpoint on
127.0.0.1; only `systemctl`, `journalctl` and `logger` are stand-ins (on PATH), because this
machine's systemd must not be touched. The stand-in `systemctl restart` records which release is
"running" (where `current` points at that moment); the readiness endpoint answers 200 only while
a healthy release runs, as a crawler that crashes at start-up would never answer.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "deploy" / "release"
ROLLBACK = ROOT / "deploy" / "rollback"


class Box:
    """A prefix with releases, the stand-in commands and the readiness endpoint."""

    def __init__(self, tmp: Path, port: int) -> None:
        self.prefix = tmp / "opt"
        self.state = tmp / "state"
        self.bin = tmp / "bin"
        self.textfile = tmp / "textfile"
        for d in (self.prefix / "releases", self.state, self.bin, self.textfile):
            d.mkdir(parents=True)
        self.healthy: set[str] = set()
        self.port = port
        (self.bin / "systemctl").write_text(
            "#!/bin/sh\n"
            f'echo "$*" >> "{self.state}/systemctl.log"\n'
            f'[ "$1" = restart ] && readlink -f "{self.prefix}/current" > "{self.state}/running"\n'
            "exit 0\n"
        )
        (self.bin / "journalctl").write_text(
            "#!/bin/sh\necho 'crawler[42]: ImportError: cannot import name boom'\n"
        )
        (self.bin / "logger").write_text(f'#!/bin/sh\necho "$*" >> "{self.state}/journal.log"\n')
        for tool in self.bin.iterdir():
            tool.chmod(0o755)

    def release(
        self, name: str, *, healthy: bool = True, accepts_config: bool = True, reloads: int = 0
    ) -> Path:
        """A stand-in release; its `crawler reload` exits `reloads` (1: the running crawler
        refused the file) and is recorded in state/crawler.log."""
        rel = self.prefix / "releases" / name
        (rel / "bin").mkdir(parents=True)
        check = (
            "exit 0"
            if accepts_config
            else "echo 'crawler.yaml:3: sources.a.nope: unknown key' >&2; exit 2"
        )
        reload = f'echo "$*" >> "{self.state}/crawler.log"; exit {reloads}'
        (rel / "bin" / "crawler").write_text(
            f'#!/bin/sh\nif [ "$1" = reload ]; then {reload}; fi\n{check}\n'
        )
        (rel / "bin" / "crawler").chmod(0o755)
        if healthy:
            self.healthy.add(str(rel))
        return rel

    def running(self) -> str:
        f = self.state / "running"
        return Path(f.read_text().strip()).name if f.exists() else ""

    def link(self, name: str) -> str:
        p = self.prefix / name
        return Path(os.readlink(p)).name if p.is_symlink() else ""

    def run(self, script: Path, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "CRAWLER_PREFIX": str(self.prefix),
            "CRAWLER_READY_URL": f"http://127.0.0.1:{self.port}/readyz",
            "CRAWLER_READY_ATTEMPTS": "3",
            "CRAWLER_READY_INTERVAL": "0.1",
            "CRAWLER_TEXTFILE_DIR": str(self.textfile),
            "CRAWLER_CONFIG": str(self.state / "crawler.yaml"),
        }
        return subprocess.run(
            [str(script), *args], capture_output=True, text=True, env=env, timeout=60, check=False
        )

    def metrics(self) -> str:
        return (self.textfile / "crawler_deploy.prom").read_text()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    port = free_port()
    b = Box(tmp_path, port)

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            running = (
                (b.state / "running").read_text().strip() if (b.state / "running").exists() else ""
            )
            self.send_response(200 if running in b.healthy else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield b
    server.shutdown()
    server.server_close()


def test_a_healthy_upgrade_stays(box: Box) -> None:
    assert box.run(RELEASE, "activate", str(box.release("v1"))).returncode == 0
    proc = box.run(RELEASE, "activate", str(box.release("v2")))
    assert proc.returncode == 0, proc.stderr
    assert (box.link("current"), box.link("previous"), box.running()) == ("v2", "v1", "v2")
    assert 'crawler_deploy_info{version="v2"} 1' in box.metrics()
    assert "crawler_deploy_last_rollback_timestamp_seconds 0" in box.metrics()
    assert "upgrade to v2 is ready" in (box.state / "journal.log").read_text()


def test_an_upgrade_that_never_gets_ready_is_rolled_back(box: Box) -> None:
    assert box.run(RELEASE, "activate", str(box.release("v1"))).returncode == 0
    proc = box.run(RELEASE, "activate", str(box.release("v2", healthy=False)))
    assert proc.returncode == 1
    assert "v2: not ready after 3 attempts" in proc.stderr
    assert "ImportError: cannot import name boom" in proc.stderr  # the last log lines
    assert "rolled back to v1; the previous release is ready again" in proc.stderr
    # The old version is current and running again; the failed one is kept for a look.
    assert (box.link("current"), box.running()) == ("v1", "v1")
    assert (box.prefix / "releases" / "v2").is_dir()
    assert 'crawler_deploy_info{version="v1"} 1' in box.metrics()
    stamp = int(
        box.metrics().split("\ncrawler_deploy_last_rollback_timestamp_seconds ")[1].split()[0]
    )
    assert stamp > 1_700_000_000
    assert "rolled back to v1" in (box.state / "journal.log").read_text()
    restarts = (box.state / "systemctl.log").read_text().splitlines()
    assert restarts == ["restart crawler.service"] * 3


def test_a_config_the_new_version_refuses_switches_nothing(box: Box) -> None:
    assert box.run(RELEASE, "activate", str(box.release("v1"))).returncode == 0
    proc = box.run(RELEASE, "activate", str(box.release("v2", accepts_config=False)))
    assert proc.returncode == 1
    assert "sources.a.nope: unknown key" in proc.stderr
    assert "v2 rejects" in proc.stderr and "nothing was switched" in proc.stderr
    assert (box.link("current"), box.running()) == ("v1", "v1")
    assert (box.state / "systemctl.log").read_text().splitlines() == ["restart crawler.service"]


def test_pruning_keeps_the_current_and_the_previous_release(box: Box) -> None:
    for name in ("v1", "v2", "v3", "v4"):
        assert box.run(RELEASE, "activate", str(box.release(name))).returncode == 0
    assert sorted(p.name for p in (box.prefix / "releases").iterdir()) == ["v3", "v4"]
    assert (box.link("current"), box.link("previous")) == ("v4", "v3")


def test_rollback_by_hand_swaps_current_and_previous(box: Box) -> None:
    for name in ("v1", "v2"):
        assert box.run(RELEASE, "activate", str(box.release(name))).returncode == 0
    proc = box.run(ROLLBACK)
    assert proc.returncode == 0, proc.stderr
    assert (box.link("current"), box.link("previous"), box.running()) == ("v1", "v2", "v1")
    assert "crawler_deploy_last_rollback_timestamp_seconds 0" not in box.metrics()
    assert box.run(ROLLBACK).returncode == 0  # and forward again
    assert (box.link("current"), box.running()) == ("v2", "v2")


def test_a_first_install_that_never_gets_ready_fails_without_a_rollback(box: Box) -> None:
    proc = box.run(RELEASE, "activate", str(box.release("v1", healthy=False)))
    assert proc.returncode == 1
    assert "no earlier release to roll back to" in proc.stderr
    assert box.link("current") == "v1"


def test_rollback_with_nothing_to_go_back_to_says_so(box: Box) -> None:
    proc = box.run(ROLLBACK)
    assert proc.returncode == 1 and "no previous release" in proc.stderr


def test_the_same_release_with_a_new_configuration_reloads_without_a_restart(box: Box) -> None:
    v1 = box.release("v1")
    assert box.run(RELEASE, "activate", str(v1)).returncode == 0
    proc = box.run(RELEASE, "activate", str(v1))  # deploy/install re-run: the config changed
    assert proc.returncode == 0, proc.stderr
    assert "no restart needed" in proc.stdout
    proc = box.run(RELEASE, "reload")
    assert proc.returncode == 0, proc.stderr
    assert (box.state / "systemctl.log").read_text().splitlines() == ["restart crawler.service"]
    reloads = (box.state / "crawler.log").read_text().splitlines()
    assert reloads == [f"reload -c {box.state / 'crawler.yaml'}"] * 2
    assert "configuration reloaded by v1" in (box.state / "journal.log").read_text()


def test_a_reload_the_crawler_refuses_falls_back_to_a_restart(box: Box) -> None:
    assert box.run(RELEASE, "activate", str(box.release("v1", reloads=1))).returncode == 0
    proc = box.run(RELEASE, "reload")
    assert proc.returncode == 0, proc.stderr
    assert "did not take the configuration (exit 1); restarting" in proc.stdout
    restarts = (box.state / "systemctl.log").read_text().splitlines()
    assert restarts == ["restart crawler.service"] * 2
    assert box.running() == "v1"


def test_a_reload_with_a_config_the_release_refuses_changes_nothing(box: Box) -> None:
    assert box.run(RELEASE, "activate", str(box.release("v1"))).returncode == 0
    (box.prefix / "releases" / "v1" / "bin" / "crawler").write_text(
        "#!/bin/sh\necho 'crawler.yaml:3: sources.a.nope: unknown key' >&2; exit 2\n"
    )
    proc = box.run(RELEASE, "reload")
    assert proc.returncode == 1 and "keeps its configuration" in proc.stderr
    assert (box.state / "systemctl.log").read_text().splitlines() == ["restart crawler.service"]
