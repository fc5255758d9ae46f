"""The `metrics` section: the crawler's own HTTP endpoints (`/metrics`, `/healthz`,
`/readyz`): where they listen, basic auth and TLS.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from crawler.config import convert as cv
from crawler.config.loader import (
    REQUIRED,
    section,
    setting,
)
from crawler.config.web import server_ssl_context, users_file


@dataclass(frozen=True, kw_only=True)
class MetricsTLSConfig:
    """TLS for the endpoints, with exporter-toolkit's `tls_server_config` key names."""

    cert_file: Path = setting(REQUIRED, cv.path, "PEM certificate (chain) the endpoints present")
    key_file: Path = setting(REQUIRED, cv.path, "its PEM private key (readable by the crawler)")

    def check(self) -> Iterable[tuple[str, str]]:
        try:
            server_ssl_context(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            yield "cert_file", f"cannot load the certificate and key: {exc}"


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    """Where /metrics, /healthz and /readyz listen, and who may read them."""

    listen: tuple[str, int] = setting(
        ("127.0.0.1", 9410),
        cv.listen_address,
        "where `/metrics`, `/healthz`, `/readyz` listen; `0.0.0.0:9410` for a Prometheus on "
        "another host",
        shown="`127.0.0.1:9410`",
    )
    basic_auth: tuple[tuple[str, str], ...] = setting(
        (),
        users_file,
        "a file of `basic_auth_users: {user: bcrypt-hash}` (exporter-toolkit's web config, "
        "the one node_exporter's `--web.config.file` reads): `/metrics` then asks for a "
        "password (`/healthz` and `/readyz` stay open, for probes); `scripts/hash-password` "
        "makes a hash",
        shown="none: no password",
    )
    tls: MetricsTLSConfig | None = section(
        MetricsTLSConfig, "serve the endpoints over HTTPS (`cert_file`, `key_file`)", optional=True
    )

    @property
    def host(self) -> str:
        return self.listen[0]

    @property
    def port(self) -> int:
        return self.listen[1]
