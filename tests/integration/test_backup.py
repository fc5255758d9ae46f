"""backup/backup.sh: a real PostgreSQL the crawler filled is dumped as the read-only `backup`
role, the dump restores into a fresh server with the same rows (counts and a checksum), retention
keeps what it says, and the outcome is exported as textfile metrics that promtool accepts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.crawler_proc import run_cli
from tests.helpers import PostgresServer, require
from tests.site import Site

ROOT = Path(__file__).resolve().parents[2]
BACKUP = ROOT / "backup" / "backup.sh"
INIT_ROLE = ROOT / "backup" / "initdb-backup-role.sh"
CHECKSUM = (
    "select count(*), md5(coalesce(string_agg(source || '/' || key || '/' || data::text, ','"
    " order by source, key), '')) from scraped_data"
)


def fill(site: Site, tmp_path: Path, dsn: str) -> None:
    cfg = tmp_path / "crawler.yaml"
    cfg.write_text(
        f"""\
state_dir: {tmp_path}/var
storage: {{dsn: "{dsn}"}}
fetch: {{politeness_delay: 0s, robots: false}}
sources:
  - name: quotes
    every: 1h
    urls: ["{site.base}/page/{{0..4}}"]
    items: div.quote
    fields: {{text: span.text::text, author: small.author::text}}
    key: [text]
"""
    )
    proc = run_cli("once", "-c", str(cfg))
    assert proc.returncode == 0, proc.stderr


def pg_env(pg: PostgresServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment the postgres image gives its scripts: libpq's variables for this server,
    the server's own binaries first, the backup role's password in a secret file."""
    secret = tmp_path / "backup_password"
    secret.write_text("backup-secret\n")
    return {
        **os.environ,
        "PATH": f"{pg.bin}:{os.environ['PATH']}",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg.port),
        "PGPASSWORD_FILE": str(secret),
        "BACKUP_DB_PASSWORD_FILE": str(secret),
        **extra,
    }


def run_backup(
    pg: PostgresServer, db: str, tmp_path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    settings = {
        "PGUSER": "backup",
        "PGDATABASE": db,
        "BACKUP_DIR": str(tmp_path / "backups"),
        "METRICS_DIR": str(tmp_path),
    }
    environ = pg_env(pg, tmp_path, **{**settings, **env})
    return subprocess.run(
        [str(BACKUP), *args], capture_output=True, text=True, env=environ, timeout=120, check=False
    )


@pytest.fixture
def filled(pg_server: PostgresServer, pg_dsn: str, site: Site, tmp_path: Path) -> tuple[str, str]:
    """The crawler's database, filled by a real crawl, with the `backup` role of the init script."""
    fill(site, tmp_path, pg_dsn)
    env = pg_env(pg_server, tmp_path, POSTGRES_USER="postgres", POSTGRES_DB="postgres")
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_roles where rolname = 'backup'").fetchone()
    if not exists:  # the role is cluster-wide: created once per test session's server
        proc = subprocess.run([str(INIT_ROLE)], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
    return pg_dsn, pg_dsn.rsplit("/", 1)[1]


def test_backup_restores_into_a_fresh_server_with_the_same_rows(
    pg_server: PostgresServer, filled: tuple[str, str], tmp_path: Path
) -> None:
    dsn, db = filled
    with psycopg.connect(dsn) as conn:
        before = conn.execute(CHECKSUM).fetchone()
        jobs = conn.execute("select count(*) from crawler_jobs").fetchone()
    assert before is not None and before[0] > 0, before
    proc = run_backup(pg_server, db, tmp_path, "--once")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [dump] = sorted((tmp_path / "backups" / "daily").glob(f"{db}-*.dump"))
    # Weekly and monthly copies are the same file (hard links), not more space.
    assert len(list((tmp_path / "backups" / "weekly").iterdir())) == 1
    assert os.stat(dump).st_nlink == 3

    fresh = PostgresServer()
    fresh.start()
    try:
        target = fresh.create_database()
        restored = subprocess.run(
            [
                str(fresh.bin / "pg_restore"),
                "--no-owner",
                "--exit-on-error",
                "-d",
                target,
                str(dump),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert restored.returncode == 0, restored.stderr
        with psycopg.connect(target) as conn:
            assert conn.execute(CHECKSUM).fetchone() == before
            assert conn.execute("select count(*) from crawler_jobs").fetchone() == jobs
    finally:
        fresh.destroy()


def test_backup_role_can_read_and_not_write(
    pg_server: PostgresServer, filled: tuple[str, str]
) -> None:
    _, db = filled
    with psycopg.connect(pg_server.dsn(db).replace("postgres@", "backup:backup-secret@")) as conn:
        assert conn.execute("select count(*) from scraped_data").fetchone()[0] > 0  # type: ignore[index]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("insert into crawler_jobs (source) values ('x')")


def test_metrics_and_retention(
    pg_server: PostgresServer, filled: tuple[str, str], tmp_path: Path
) -> None:
    _, db = filled
    daily = tmp_path / "backups" / "daily"
    daily.mkdir(parents=True)
    for day in range(1, 10):  # nine older dumps, the oldest first by name
        (daily / f"{db}-202601{day:02d}T031500Z.dump").write_bytes(b"x" * 1000)
    proc = run_backup(pg_server, db, tmp_path, "--once", KEEP_DAILY="3")
    assert proc.returncode == 0, proc.stderr
    kept = sorted(p.name for p in daily.glob("*.dump"))
    assert len(kept) == 3 and kept[:2] == [
        f"{db}-20260108T031500Z.dump",
        f"{db}-20260109T031500Z.dump",
    ]
    metrics = (tmp_path / "crawler_backup.prom").read_text()
    promtool = require("promtool")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=metrics, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    values = dict(line.split() for line in metrics.splitlines() if not line.startswith("#"))
    assert int(values["crawler_backup_last_success_timestamp_seconds"]) > 1_700_000_000
    assert int(values["crawler_backup_last_size_bytes"]) > 1000
    assert values["crawler_backup_previous_size_bytes"] == "1000"
    assert values["crawler_backup_last_failure_timestamp_seconds"] == "0"


def test_a_failed_backup_keeps_the_last_good_one_and_says_so(
    pg_server: PostgresServer, filled: tuple[str, str], tmp_path: Path
) -> None:
    _, db = filled
    assert run_backup(pg_server, db, tmp_path, "--once").returncode == 0
    proc = run_backup(pg_server, db, tmp_path, "--once", PGDATABASE="no_such_database")
    assert proc.returncode == 1 and "FAILED" in proc.stdout
    assert len(list((tmp_path / "backups" / "daily").glob(f"{db}-*.dump"))) == 1
    assert not list((tmp_path / "backups").glob(".partial-*"))


@pytest.mark.parametrize("script", [BACKUP, INIT_ROLE])
def test_backup_scripts_are_shellcheck_clean(script: Path) -> None:
    proc = subprocess.run(
        [require("shellcheck"), "-x", "--severity=style", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
