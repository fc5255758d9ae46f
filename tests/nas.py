"""The NAS side outside Docker (shared test support): scripts/setup-secrets in a scratch
folder, and Debian's Caddy on the repository's proxy/Caddyfile.

Outside Docker the Caddyfile needs: the names from .env (NAS_NAME, NAS_ADDRESS), the user lists'
paths instead of /run/secrets/, a data folder for Caddy's local CA, and `basic_auth` spelled
`basicauth`, its name before Caddy 2.8 (Debian ships 2.6; compose pins 2.11).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.helpers import require

ROOT = Path(__file__).resolve().parents[1]
CADDYFILE = ROOT / "proxy" / "Caddyfile"


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
