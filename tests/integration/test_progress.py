"""`crawler once` at a terminal: live progress per source and the closing summary table on
stderr; in a pipe, neither (the JSON log lines say the same)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from tests import terminal
from tests.site import Site, html_source


def config(site: Site, tmp_path: Path) -> Path:
    path = tmp_path / "crawler.yaml"
    path.write_text(f"""\
state_dir: {tmp_path}/var
fetch: {{politeness_delay: 0.1s, robots: false, retry: {{attempts: 1}}}}
sources:
{html_source(site, "quotes", 8)}  - name: broken
    every: 1h
    urls: ["{site.base}/missing/{{1..3}}"]
    fields: {{title: title::text}}
""")
    return path


def once(cfg: Path, stderr_tty: bool) -> terminal.Result:
    return terminal.run(
        [sys.executable, "-m", "crawler", "once", "-c", str(cfg)],
        stdout_tty=False,
        stderr_tty=stderr_tty,
        env={"NO_COLOR": "1"},
        timeout=120,
    )


def test_progress_and_summary_on_a_terminal(site: Site, tmp_path: Path) -> None:
    result = once(config(site, tmp_path), stderr_tty=True)
    assert result.returncode == 1  # the broken source failed
    screens = result.stderr.split("\x1b[2F\x1b[J")  # each redraw clears the two lines first
    assert len(screens) >= 3  # drawn at the start, redrawn while running
    first = screens[0].splitlines()
    assert re.fullmatch(r"quotes\s+0/8 pages\s+0 records\s+0 failed\s+running", first[0])
    assert re.fullmatch(r"broken\s+0/3 pages\s+0 records\s+0 failed\s+running", first[1])
    # Pages come in while the run goes on (0.1 s apart): some redraw shows a part done.
    assert any(re.search(r"quotes\s+[1-7]/8 pages", s) for s in screens)
    assert any(re.search(r"broken\s+3/3 pages\s+0 records\s+3 failed\s+failed", s) for s in screens)
    # The last screen: the progress lines cleared, the summary table in their place.
    table = screens[-1].splitlines()
    assert table[0].split() == ["source", "status", "pages", "304", "failed", "records"]
    assert table[1].split() == ["quotes", "success", "8", "0", "0", "160"]
    assert table[2].split()[:6] == ["broken", "failure", "0", "0", "3", "0"]
    # stdout is not a terminal: JSON log lines only.
    assert all(json.loads(line) for line in result.stdout.splitlines())


def test_nothing_of_it_in_a_pipe(site: Site, tmp_path: Path) -> None:
    result = once(config(site, tmp_path), stderr_tty=False)
    assert result.returncode == 1
    assert result.stderr == ""
    finished = [
        json.loads(line) for line in result.stdout.splitlines() if '"source run finished"' in line
    ]
    assert {(e["source"], e["status"], e["records"]) for e in finished} == {
        ("quotes", "success", 160),
        ("broken", "failure", 0),
    }
