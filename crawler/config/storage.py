"""The `storage` and `spool` sections: where records go (PostgreSQL or the embedded SQLite
store) and the local spool's path and size cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crawler.config import convert as cv
from crawler.config.loader import (
    secret,
    setting,
)


@dataclass(frozen=True, kw_only=True)
class StorageConfig:
    """Where records go: PostgreSQL when a DSN is set, otherwise an embedded SQLite file."""

    dsn: str | None = setting(
        None,
        cv.dsn,
        "a PostgreSQL URI or key=value string, **without** a password; none → the embedded "
        "SQLite store",
    )
    password: str | None = secret(
        "the database password: `password_env` names an environment variable holding it, "
        "`password_file` a file (e.g. `/etc/crawler/db_password`, `/run/secrets/…`)"
    )
    sslmode: str | None = setting(
        None,
        cv.choice("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
        "TLS to PostgreSQL (libpq's `sslmode`); `verify-full` with `sslrootcert` checks the "
        "server is the NAS (docs/security.md); a `sslmode` in the DSN is used when this is unset",
        shown="libpq's `prefer`",
    )
    sslrootcert: Path | None = setting(
        None,
        cv.path,
        "the CA (or the server's self-signed certificate) `verify-ca`/`verify-full` trust, e.g. "
        "`/etc/crawler/postgres-ca.crt`",
        shown="none",
    )
    sqlite_path: Path = setting(
        Path("crawler.sqlite"),
        cv.path,
        "the embedded store (the default is under `state_dir`)",
        shown="`<state_dir>/crawler.sqlite`",
    )
    batch_size: int = setting(
        500,
        cv.positive_int,
        "records per transaction: larger means fewer commits (and SD writes), more RAM per run",
    )
    connect_timeout: float = setting(5.0, cv.positive_duration, "connecting to PostgreSQL")
    write_timeout: float = setting(
        30.0,
        cv.positive_duration,
        "a batch not committed in this time is spooled and the connection dropped (a NAS gone "
        "from the Wi-Fi leaves sockets TCP would retry for ~15 minutes)",
    )

    jobs_retention: float = setting(
        90 * 86400,
        cv.duration,
        "`crawler_jobs` rows older than this are deleted (hourly, in small batches, off the "
        "hot path); `0` keeps them forever. One row per source run: 200 sources every 5 "
        "minutes is ~57,000 rows a day",
    )
    history_retention: float = setting(
        365 * 86400,
        cv.duration,
        "versions in `scraped_data_history` (`history: true`) older than this are deleted the "
        "same way; `0` keeps every version forever",
    )

    @property
    def backend(self) -> str:
        return "postgres" if self.dsn else "sqlite"


@dataclass(frozen=True, kw_only=True)
class SpoolConfig:
    """The local SQLite spool used while PostgreSQL is unreachable."""

    path: Path = setting(
        Path("spool.sqlite"),
        cv.path,
        "the spool file (the default is under `state_dir`)",
        shown="`<state_dir>/spool.sqlite`",
    )
    max_bytes: int = setting(
        256 * 2**20,
        cv.size,
        "the cap (pages in use, not file size); at the cap new records are refused, logged and "
        "counted, `/readyz` is 503",
    )
    drain_batch: int = setting(500, cv.positive_int, "records per drain transaction")
