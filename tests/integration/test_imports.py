"""`crawler once` imports only what it uses: every import is resident memory for the whole
process (issue 13's peak RSS; bench/rss_imports.py says where the megabytes go).

Run in a fresh interpreter, as the command runs, crawling the test site into PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.site import Site, quote_source

# What `run` needs and `once` does not: the HTTP server, the scheduler, leases and retention;
# what this configuration does not need: bcrypt (only behind metrics.basic_auth), protego (the
# tests' configurations say `robots: false`), difflib (a configuration with a mistake), lxml and
# jmespath (a CSS-only source whose pages Lexbor parses); and parsel's package beyond its CSS
# translator (its Selector, w3lib); the Public Suffix List (read on the first cookie that names
# a domain); and anything browser-related (crawler.render: only for sources with `render`).
NOT_FOR_ONCE = (
    "lxml",
    "jmespath",
    "aiohttp.web",
    "apscheduler",
    "bcrypt",
    "protego",
    "difflib",
    "crawler.observability.server",
    "crawler.observability.webauth",
    "crawler.run.schedule",
    "crawler.run.lease",
    "crawler.storage.retention",
    "crawler.observability.systemd",
    "parsel",
    "parsel.selector",
    "w3lib",
    "publicsuffixlist",
    "crawler.render",
    "crawler.render.browser",
    "crawler.render.cdp",
    "crawler.render.page",
    "crawler.render.renderer",
)

ONCE = """\
import json, sys
from crawler.cli import main
status = main(["once", "-c", sys.argv[1]])
with open(sys.argv[2], "w") as out:
    json.dump(sorted(sys.modules), out)
sys.exit(status)
"""


def test_once_leaves_the_server_scheduler_and_unused_libraries_unimported(
    site: Site, pg_dsn: str, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config(
        storage={"dsn": pg_dsn},
        sources=[quote_source("quotes", [f"{site.base}/page/{{0..2}}"])],
    )
    modules_file = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", ONCE, str(cfg), str(modules_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    finished = [
        json.loads(line) for line in proc.stdout.splitlines() if "source run finished" in line
    ]
    assert finished[0]["records"] == 60  # the run did its work: 3 pages x 20 quotes
    modules = set(json.loads(modules_file.read_text()))
    # The parts the run used are there (so the check below is not vacuous) …
    assert {"aiohttp", "psycopg", "selectolax.lexbor", "crawler.run.pipeline"} <= modules
    # … and the others are not.
    assert sorted(modules.intersection(NOT_FOR_ONCE)) == []


def test_every_crawler_module_named_here_exists() -> None:
    """A module renamed or moved must not make the check above pass vacuously."""
    from tests import layout

    known = set(layout.modules())
    named = {m for m in NOT_FOR_ONCE if m.startswith("crawler.")}
    assert named and named <= known, sorted(named - known)
