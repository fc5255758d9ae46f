"""The database's init scripts (postgres/init/) on a real PostgreSQL, and the crawler on it.

The cluster gets what the postgres image does on a first start: a database `crawler`, then
10-roles.sh and 20-tls.sh, run as the superuser over the local socket with the secrets in a
folder of files. Then, over TCP: the crawler crawls a local site as the role `crawler` with
`sslmode=verify-full` (the certificate 20-tls.sh made is the root it trusts); `grafana_reader`
reads what it stored and can neither write, drop, create nor run a program on the server;
the superuser and connections without TLS are refused; a re-run rotates a password.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from crawler.config.root import load_config
from crawler.service import Service
from tests.helpers import self_signed_certificate
from tests.nas import ROLES, Secured, secured_postgres
from tests.site import Site


@pytest.fixture(scope="module")
def secured() -> Iterator[Secured]:
    with secured_postgres() as s:
        yield s


def test_roles_are_not_superusers(secured: Secured) -> None:
    with secured.admin() as conn:
        rows = conn.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
            "FROM pg_roles WHERE rolname = ANY(%s)",
            (list(ROLES),),
        ).fetchall()
    assert {r[0] for r in rows} == set(ROLES)
    for name, *powers in rows:
        assert not any(powers), f"{name} has {powers}"


def test_network_logins_need_tls_and_never_the_superuser(secured: Secured) -> None:
    with psycopg.connect(secured.dsn("crawler")) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert conn.execute("SELECT current_user").fetchone() == ("crawler",)
    with pytest.raises(psycopg.OperationalError, match=r"no encryption|pg_hba"):
        psycopg.connect(secured.dsn("crawler", sslmode="disable"))
    with pytest.raises(psycopg.OperationalError, match=r"rejects|pg_hba"):
        psycopg.connect(
            f"host=127.0.0.1 port={secured.server.port} dbname=crawler user=postgres "
            f"sslmode=verify-full sslrootcert={secured.ca}"
        )
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(secured.dsn("crawler"), password="wrong")


def test_crawler_stores_as_crawler_and_grafana_reader_only_reads(
    secured: Secured, tmp_path: Path, site: Site
) -> None:
    secret = tmp_path / "crawler_db_password"
    secret.write_text(secured.password("crawler"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""\
state_dir: {tmp_path}/var
storage:
  dsn: "postgresql://crawler@127.0.0.1:{secured.server.port}/crawler"
  sslmode: verify-full
  sslrootcert: {secured.ca}
  password_file: {secret}
fetch: {{politeness_delay: 0s, robots: false}}
sources:
  - name: s
    every: 1h
    urls: ["{site.base}/page/{{0..1}}"]
    items: div.quote
    fields: {{text: span.text::text}}
    key: [text]
""")
    registry = CollectorRegistry()
    [result] = asyncio.run(Service(load_config(cfg), registry).once())
    assert result.status == "success", result
    with secured.admin() as conn:
        owners = dict(
            conn.execute(
                "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        )
    assert "scraped_data" in owners, (owners, result)
    assert set(owners.values()) == {"crawler"}  # the crawler owns its tables

    with psycopg.connect(secured.dsn("grafana_reader"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM scraped_data").fetchone() == (40,)
        assert conn.execute("SELECT count(*) FROM crawler_jobs").fetchone() == (1,)
        forbidden = [
            "INSERT INTO scraped_data (source, key, data) VALUES ('x', 'y', '{}')",
            "UPDATE scraped_data SET processed = true",
            "DELETE FROM scraped_data",
            "DROP TABLE scraped_data",
            "TRUNCATE scraped_data",
            "CREATE TABLE mine (x int)",
            "COPY (SELECT 1) TO PROGRAM 'touch /tmp/pi-crawler-pwned'",
            "SELECT pg_read_file('/etc/passwd')",
            "CREATE ROLE another LOGIN",
        ]
        for sql in forbidden:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
    assert not Path("/tmp/pi-crawler-pwned").exists()

    with psycopg.connect(secured.dsn("pipeline_reader"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM scraped_data").fetchone() == (40,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM scraped_data")

    with psycopg.connect(secured.dsn("exporter"), autocommit=True) as conn:
        # pg_monitor: statistics, including other sessions' queries; not the data.
        assert conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()
        assert conn.execute("SELECT pg_database_size('crawler')").fetchone()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # not even the schema
            conn.execute("SELECT count(*) FROM public.scraped_data")

    # The backup service's role still connects (10-roles.sh granted it CONNECT) and reads.
    with psycopg.connect(secured.dsn("crawler"), user="backup", password="backup-pw") as conn:
        assert conn.execute("SELECT count(*) FROM scraped_data").fetchone() == (40,)

    with psycopg.connect(secured.dsn("crawler"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("COPY (SELECT 1) TO PROGRAM 'touch /tmp/pi-crawler-pwned'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE ROLE another LOGIN")
    assert not Path("/tmp/pi-crawler-pwned").exists()


def test_rerun_rotates_a_password_and_keeps_grants(secured: Secured) -> None:
    old = secured.dsn("grafana_reader")
    secret = secured.secrets / "grafana_db_password"
    secret.write_text("rotated-pw")
    secured.run_init("10-roles.sh")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(old)
    with psycopg.connect(secured.dsn("grafana_reader")) as conn:
        assert conn.execute("SELECT has_database_privilege('crawler', 'CONNECT')").fetchone() == (
            True,
        )
    with secured.admin() as conn:
        assert not conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'grafana_reader'"
        ).fetchone()[0]  # type: ignore[index]
    assert shutil.which("psql") or (secured.server.bin / "psql").exists()


def test_verify_full_refuses_a_server_it_was_not_told_to_trust(
    secured: Secured, tmp_path: Path, site: Site
) -> None:
    """storage.sslmode/sslrootcert reach libpq: another CA, and nothing is stored there."""
    other_ca, _ = self_signed_certificate(tmp_path, "other")
    secret = tmp_path / "crawler_db_password"
    secret.write_text(secured.password("crawler"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""\
state_dir: {tmp_path}/var
storage:
  dsn: "postgresql://crawler@127.0.0.1:{secured.server.port}/crawler"
  sslmode: verify-full
  sslrootcert: {other_ca}
  password_file: {secret}
  connect_timeout: 2s
fetch: {{politeness_delay: 0s, robots: false}}
sources:
  - name: elsewhere
    every: 1h
    urls: ["{site.base}/page/0"]
    items: div.quote
    fields: {{text: span.text::text}}
    key: [text]
""")
    registry = CollectorRegistry()
    asyncio.run(Service(load_config(cfg), registry).once())
    labels = {"source": "elsewhere"}
    assert registry.get_sample_value("crawler_records_stored_total", labels) in (None, 0.0)
    assert registry.get_sample_value("crawler_records_spooled_total", labels) == 20
