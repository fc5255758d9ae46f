"""The files behind the metrics listener's `basic_auth` and `tls` keys, read and checked when the
configuration loads: the `user: bcrypt-hash` pairs of an exporter-toolkit web config
(`read_users`, the converter `users_file`) and the server's TLS context (`server_ssl_context`).
The listener's middleware that uses them is crawler/observability/webauth.py.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import yaml

from crawler.config import convert as cv


def read_users(path: Path) -> dict[str, str]:
    """`user: bcrypt-hash` pairs from an exporter-toolkit web config (its `basic_auth_users`)
    or from a file holding only that mapping. Raises ValueError with a message for the user."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not YAML: {exc}") from None
    if isinstance(data, dict) and "basic_auth_users" in data:
        data = data["basic_auth_users"]
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path} has no `basic_auth_users: {{user: bcrypt-hash}}`")
    users = {}
    for user, hashed in data.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ValueError(f"{path}: {user!r} needs a bcrypt hash (scripts/hash-password)")
        users[str(user)] = hashed
    return users


def users_file(value: Any) -> tuple[tuple[str, str], ...]:
    """Converter of `metrics.basic_auth`: the file's users, read (and checked) at load time."""
    return tuple(sorted(read_users(cv.path(value)).items()))


def server_ssl_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS 1.2 or later with the given certificate chain and key."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
