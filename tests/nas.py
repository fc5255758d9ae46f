"""The NAS side outside Docker (shared test support): scripts/setup-secrets in a scratch
folder, Debian's Caddy on the repository's proxy/Caddyfile, and PostgreSQL set up as the
NAS's image sets it up (roles, TLS).

Outside Docker the Caddyfile needs: the names from .env (NAS_NAME, NAS_ADDRESS), the user lists'
paths instead of /run/secrets/, a data folder for Caddy's local CA, and `basic_auth` spelled
`basicauth`, its name before Caddy 2.8 (Debian ships 2.6; compose pins 2.11).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from tests.helpers import PostgresServer, require

ROOT = Path(__file__).resolve().parents[1]
CADDYFILE = ROOT / "proxy" / "Caddyfile"
INIT = ROOT / "postgres" / "init"
ROLES = ("crawler", "grafana_reader", "exporter", "pipeline_reader")


def caddyfile_for_debian(text: str | None = None) -> str:
    """The Caddyfile (or `text`) as Caddy 2.6 reads it."""
    source = CADDYFILE.read_text(encoding="utf-8") if text is None else text
    return re.sub(r"\bbasic_auth\b", "basicauth", source)


def caddy_env(
    tmp: Path,
    users: Path,
    push_users: Path,
    name: str = "nas.example",
    address: str = "192.0.2.10",
    browser_users: Path | None = None,
) -> dict[str, str]:
    """The environment compose gives the proxy, with Caddy's state under `tmp` (the browser's
    user list defaults to `users`)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "XDG_DATA_HOME": str(tmp / "caddy-data"),
        "XDG_CONFIG_HOME": str(tmp / "caddy-config"),
        "NAS_NAME": name,
        "NAS_ADDRESS": address,
        "PROXY_USERS_FILE": str(users),
        "LOKI_PUSH_USERS_FILE": str(push_users),
        "BROWSER_USERS_FILE": str(browser_users or users),
    }


def caddy(command: str, caddyfile: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`caddy adapt` or `caddy validate` on a Caddyfile."""
    return subprocess.run(
        [require("caddy"), command, "--config", str(caddyfile), "--adapter", "caddyfile"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def setup_secrets(folder: Path, dotenv: str | None) -> subprocess.CompletedProcess[str]:
    """scripts/setup-secrets run from a copy in `folder` (with that .env text; None: no .env),
    without a terminal: its secrets land in `folder`/secrets."""
    (folder / "scripts").mkdir(exist_ok=True)
    for name in ("setup-secrets", "hash-password"):
        shutil.copy(ROOT / "scripts" / name, folder / "scripts" / name)
    if dotenv is None:
        (folder / ".env").unlink(missing_ok=True)
    else:
        (folder / ".env").write_text(dotenv)
    return subprocess.run(
        [str(folder / "scripts" / "setup-secrets")],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass
class Secured:
    server: PostgresServer
    secrets: Path
    ca: Path

    def password(self, role: str) -> str:
        name = {"grafana_reader": "grafana", "pipeline_reader": "pipeline"}.get(role, role)
        return (self.secrets / f"{name}_db_password").read_text()

    def dsn(self, role: str, sslmode: str = "verify-full") -> str:
        return make_conninfo(
            host="127.0.0.1",
            port=self.server.port,
            dbname="crawler",
            user=role,
            password=self.password(role),
            sslmode=sslmode,
            sslrootcert=str(self.ca),
        )

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            f"host={self.server.dir} port={self.server.port} user=postgres dbname=crawler",
            autocommit=True,
        )

    def run_init(self, script: str) -> None:
        env = {
            "PATH": f"{self.server.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "PGHOST": str(self.server.dir),
            "PGPORT": str(self.server.port),
            "PGDATA": str(self.server.data),
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": "crawler",
            "SECRETS_DIR": str(self.secrets),
            "BACKUP_DB_PASSWORD_FILE": str(self.secrets / "backup_db_password"),
        }
        cmd = [str(INIT / script)]
        if os.geteuid() == 0:
            # As the image does: the scripts run as the server's own user.
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for role in ROLES:
            assert self.password(role) not in proc.stdout + proc.stderr


@contextlib.contextmanager
def secured_postgres() -> Iterator[Secured]:
    """The NAS's PostgreSQL as its image sets it up on a first start: a database `crawler`, then
    backup/initdb-backup-role.sh, postgres/init/10-roles.sh and 20-tls.sh run as the server's
    user with the secrets in a folder of files; TLS on, its certificate the root to trust."""
    server = PostgresServer()
    server.start()
    try:
        secrets = server.dir / "secrets"
        secrets.mkdir()
        for i, name in enumerate(("crawler", "grafana", "exporter", "pipeline")):
            # Named as Docker mounts them (/run/secrets/NAME); quotes and a `$` on purpose.
            (secrets / f"{name}_db_password").write_text(f"{name}-pw-{i}'\"$x")
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for path in (secrets, *secrets.iterdir()):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE crawler")  # the image's POSTGRES_DB
        s = Secured(server, secrets, server.data / "server.crt")
        # In the order compose mounts them: the backup service's role first.
        (secrets / "backup_db_password").write_text("backup-pw")
        if os.geteuid() == 0:
            os.chown(secrets / "backup_db_password", pw.pw_uid, pw.pw_gid)
        s.run_init(str(ROOT / "backup" / "initdb-backup-role.sh"))
        s.run_init("10-roles.sh")
        s.run_init("20-tls.sh")
        with s.admin() as conn:
            conn.execute("SELECT pg_reload_conf()")
        yield s
    finally:
        server.destroy()
