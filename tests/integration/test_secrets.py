"""Secrets never reach logs or metrics, even when the database fails at every turn."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.helpers import PostgresServer, free_port, wait_for
from tests.site import Site

SECRET = "s3cr3t-Sentinel-9f2c"


def test_password_never_appears_in_logs_or_metrics(tmp_path: Path, site: Site):
    pg = PostgresServer()
    # Password authentication over TCP, so the secret really travels (trust would skip it);
    # the admin connects over the Unix socket.
    hba = pg.data / "pg_hba.conf"
    hba.write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
    pg.start()
    try:
        import psycopg

        admin = f"host={pg.dir} port={pg.port} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE crawler LOGIN PASSWORD '{SECRET}'")
            conn.execute("CREATE DATABASE crawler OWNER crawler")
        port = free_port()
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"""\
state_dir: {tmp_path}/var
log_level: DEBUG
metrics: {{listen: "127.0.0.1:{port}"}}
storage: {{dsn: "postgresql://crawler@127.0.0.1:{pg.port}/crawler", password_env: CRAWLER_DB_PASSWORD,
           connect_timeout: 1s}}
fetch: {{politeness_delay: 0s, robots: false}}
sources:
  - name: s
    every: 1s
    urls: ["{site.base}/page/{{0..2}}"]
    items: div.quote
    fields: {{text: span.text::text}}
""")
        env = {**os.environ, "CRAWLER_DB_PASSWORD": SECRET}
        proc = subprocess.Popen(
            [sys.executable, "-m", "crawler", "run", "-c", str(cfg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        metrics = ""
        try:

            def scraped() -> str:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                        body = r.read().decode()
                except OSError:
                    return ""
                return body

            # Records stored means the password authenticated (scram) against the server.
            wait_for(
                lambda: re.search(
                    r'crawler_records_stored_total\{backend="postgres",source="s"\} [1-9]',
                    scraped(),
                ),
                timeout=30,
            )
            pg.stop()  # now every write and reconnect fails and is logged
            wait_for(lambda: "crawler_database_up 0.0" in scraped(), timeout=30)
            metrics = scraped()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                readyz = r.read().decode()
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
        logs = out.decode()
        assert "database unreachable" in logs  # the failure path was really taken
        for text in (logs, metrics, readyz):
            assert SECRET not in text
    finally:
        pg.destroy()
