"""Test helpers shared by every test module: ports, a real PostgreSQL server, waiting."""

from __future__ import annotations

import contextlib
import copy
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` deep-merged: mappings merge key by key, anything else replaces,
    and None removes the key."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def write_config(directory: Path, name: str = "crawler.yaml", **overrides: Any) -> Path:
    """A configuration file for a test: defaults that keep tests fast and self-contained (state
    in `directory`, /metrics on a free port, no politeness delay, no robots.txt), deep-merged
    with `overrides` (see `merge`); `sources` is a list of source mappings. Returns its path.
    The `write_config` fixture (tests/conftest.py) is this in the test's tmp_path."""
    import yaml

    defaults: dict[str, Any] = {
        "state_dir": str(directory / "var"),
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        "fetch": {"politeness_delay": "0s", "robots": False},
    }
    path = directory / name
    path.write_text(yaml.safe_dump(merge(defaults, overrides), sort_keys=False))
    return path


def require(name: str) -> str:
    """The path of a program the tests need; fail loudly (never skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(
            f"{name} not found: scripts/test installs it (Debian packages postgresql, prometheus, "
            "prometheus-alertmanager, prometheus-node-exporter, shellcheck)"
        )
    return path


def shared_tool(name: str) -> str:
    """A real binary that CI and development machines keep beside the repository (Loki, Promtail).

    Looked up in `$PI_CRAWLER_TOOLS` (a folder holding it), else by running the `unpack` script of
    the `shared/tools` folder next to the repository's root, which prints the folder it unpacked
    into. A user's clone has neither: the test is skipped with the reason, loudly; on CI
    (`CI=true`) a missing binary fails the test instead.
    """
    reason = f"no {name}: set PI_CRAWLER_TOOLS to a folder holding it"
    if os.environ.get("PI_CRAWLER_TOOLS"):
        exe = Path(os.environ["PI_CRAWLER_TOOLS"]) / name
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    for checkout in _checkouts():
        unpack = checkout.parent / "shared" / "tools" / "unpack"
        if unpack.is_file():
            exe = _unpacked(unpack) / name
            if exe.is_file() and os.access(exe, os.X_OK):
                return str(exe)
            break
    else:
        reason += f", or keep the shared tools at {ROOT.parent / 'shared' / 'tools'}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the tools must be there)")
    pytest.skip(f"SKIPPED LOUDLY: {reason} (they exist on CI and development machines)")


_UNPACKED: dict[Path, Path] = {}


def _checkouts() -> list[Path]:
    """This checkout, and the main one when this is a `git worktree` elsewhere."""
    found = [ROOT]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        common = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--path-format=absolute", "--git-common-dir"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if common:
            found.append(Path(common).parent)
    return found


def _unpacked(script: Path) -> Path:
    """The folder `unpack` prints (it decompresses and checks the binaries once, then caches)."""
    if script not in _UNPACKED:
        proc = subprocess.run([str(script)], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise AssertionError(f"{script} failed:\n{proc.stdout}{proc.stderr}")
        _UNPACKED[script] = Path(proc.stdout.strip().splitlines()[-1])
    return _UNPACKED[script]


def for_prometheus_2_42(config: dict[str, Any]) -> dict[str, Any]:
    """prometheus.yml without the settings Debian's Prometheus/promtool 2.42 does not know.

    compose runs Prometheus 3, which reads retention from `storage.tsdb.retention` (its
    `--storage.tsdb.retention.*` flags are deprecated); 2.42 rejects the key. The tests that run
    the 2.42 binaries drop it; tests/ops/test_stack.py checks its shape against Prometheus 3.
    """
    config = copy.deepcopy(config)
    storage = config.get("storage", {})
    storage.get("tsdb", {}).pop("retention", None)
    if "tsdb" in storage and not storage["tsdb"]:
        del storage["tsdb"]
    if "storage" in config and not storage:
        del config["storage"]
    return config


def wait_for(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05
) -> object:
    """Poll `predicate` until it returns something truthy; fail loudly on timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value {last!r})")


def _pg_bin() -> Path:
    if (PG_BIN / "pg_ctl").exists():
        return PG_BIN
    found = shutil.which("pg_ctl")
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries not found: install the Debian package `postgresql` "
            "(scripts/test does this)"
        )
    return Path(found).resolve().parent


class PostgresServer:
    """A throwaway PostgreSQL cluster in a temp dir on 127.0.0.1, trust auth.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user.
    """

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="crawler-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            pw = pwd.getpwnam(self._user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )

    def _run(self, cmd: list[str]) -> None:
        if self._user:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {proc.stdout}\n{proc.stderr}")

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        self._run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "-l",
                str(self.dir / "log"),
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def self_signed_certificate(folder: Path, name: str = "cert") -> tuple[Path, Path]:
    """A one-day certificate for 127.0.0.1 that no authority signed: (cert, key) PEM files."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        [
            require("openssl"),
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key
