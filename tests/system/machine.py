"""A booted Debian for the system tier: systemd as PID 1 of its own namespaces in a tree
unpacked from tests/system/rootfs.sh's tarball, driven from the host with `nsenter`.

`Machine.boot()` unpacks a fresh tree, prepares what a container needs (units it cannot run
masked by boot.sh, the host's CA bundle and resolver so pip and apt reach the registries as on the host)
and starts tests/system/boot.sh under `unshare`; `run()` is a root shell inside; `close()`
kills PID 1 with SIGKILL, which takes every process of the namespace and every mount made in
it along, then removes the machine's cgroups and the tree. It runs from a `finally`, so a
failed or interrupted test leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
UNSHARE = ("unshare", "--fork", "--pid", "--mount", "--uts", "--propagation", "private")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def tarball(arch: str = "amd64") -> Path:
    """The cached Debian tree (built by rootfs.sh when absent: debootstrap, ~2 minutes)."""
    proc = subprocess.run(
        [str(HERE / "rootfs.sh"), arch], capture_output=True, text=True, timeout=1200
    )
    if proc.returncode != 0:
        raise AssertionError(f"tests/system/rootfs.sh failed:\n{proc.stdout}{proc.stderr}")
    return Path(proc.stdout.strip().splitlines()[-1])


class Machine:
    """One booted Debian; `with Machine(workdir) as m:` boots it and always tears it down."""

    def __init__(self, workdir: Path, image: Path, hostname: str = "pi-system-test") -> None:
        self.workdir = workdir
        self.image = image
        self.root = workdir / "root"
        self.hostname = hostname
        self.cgroup = f"pi-crawler-system-{uuid.uuid4().hex[:8]}"
        self.log = workdir / "systemd.log"
        self.pid1 = 0
        self._unshare: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Machine:
        try:
            self.boot()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ life

    def unpack(self) -> None:
        self.root.mkdir(parents=True)
        subprocess.run(
            ["tar", "-C", str(self.root), "--numeric-owner", "-xzf", str(self.image)],
            check=True,
            timeout=300,
        )
        etc = self.root / "etc"
        (etc / "hostname").write_text(self.hostname + "\n")
        shutil.copy("/etc/resolv.conf", etc / "resolv.conf")
        # This workplace reaches the registries through a proxy whose CA only the host's
        # bundle has; a Pi at home needs none of this.
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", etc / "ssl/certs/ca-certificates.crt")
        (etc / "pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")

    def boot(self, timeout: float = 60) -> None:
        if not self.root.exists():
            self.unpack()
        with self.log.open("ab") as log:
            self._unshare = subprocess.Popen(
                [*UNSHARE, str(HERE / "boot.sh"), str(self.root), self.cgroup],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not self.pid1:
            self._check_alive()
            children = Path(f"/proc/{self._unshare.pid}/task/{self._unshare.pid}/children")
            with contextlib.suppress(OSError):
                first = children.read_text().split()
                if first and os.readlink(f"/proc/{first[0]}/exe").endswith("systemd"):
                    self.pid1 = int(first[0])
            if time.monotonic() > deadline:
                raise AssertionError(f"systemd did not start:\n{self.journal_tail()}")
            time.sleep(0.1)
        while True:
            state = self.run("systemctl is-system-running", check=False, timeout=10).stdout
            if state.strip() in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                failed = self.run("systemctl --failed --no-pager", check=False).stdout
                raise AssertionError(f"not booted ({state.strip()}):\n{failed}")
            time.sleep(0.3)

    def kill(self) -> None:
        """A power cut: SIGKILL to PID 1 ends every process in the namespace at once."""
        if self.pid1:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid1, signal.SIGKILL)
            self.pid1 = 0
        if self._unshare is not None:
            try:
                self._unshare.wait(30)
            except subprocess.TimeoutExpired:
                self._unshare.kill()
                self._unshare.wait(10)
            self._unshare = None
        self._remove_cgroups()

    def close(self) -> None:
        self.kill()
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)

    def _check_alive(self) -> None:
        if self._unshare is not None and self._unshare.poll() is not None:
            raise AssertionError(f"the machine stopped:\n{self.journal_tail()}")

    def _remove_cgroups(self) -> None:
        """The machine's cgroup folders in every hierarchy, deepest first (empty once PID 1
        and its namespace are gone; the kernel may take a moment to reap them)."""
        for top in Path("/sys/fs/cgroup").glob("**/" + self.cgroup):
            for _ in range(50):
                dirs = sorted(
                    (p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
                )
                with contextlib.suppress(OSError):
                    for d in dirs:
                        d.rmdir()
                    top.rmdir()
                    break
                time.sleep(0.1)

    def journal_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    # ------------------------------------------------------------ use

    def run(
        self,
        command: str,
        check: bool = True,
        timeout: float = 120,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`command` by a root shell inside the machine (its PID, mount and UTS namespaces and
        root), with a clean environment; fails with the output when `check` and it fails."""
        self._check_alive()
        assert self.pid1, "the machine is not running"
        environ = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", **(env or {})}
        args = ["nsenter", "-t", str(self.pid1), "-p", "-m", "-u", "-C", "-r", "-w"]
        args += ["env", "-i", *(f"{k}={v}" for k, v in environ.items()), "bash", "-c", command]
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, input=input, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"inside the machine, `{command}` exited {proc.returncode}:\n"
                f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
            )
        return proc

    def show(self, unit: str, prop: str) -> str:
        """`systemctl show -p PROP --value UNIT`."""
        out = self.run(f"systemctl show -p {prop} --value {shlex.quote(unit)}").stdout
        return out.strip()

    def path(self, inside: str) -> Path:
        """A path inside the machine, as the host sees it."""
        return self.root / inside.lstrip("/")
