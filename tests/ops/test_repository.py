"""The repository stands alone: a user's clone has everything its files refer to, and the
benchmark runs from it (bench/run.sh: its own site, floor and peer scripts)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tests.helpers import require

ROOT = Path(__file__).resolve().parents[2]
# Spelled in two pieces so this file does not match itself.
OUTSIDE = ".." + "/shared"


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    return [p for p in out.decode().split("\0") if p]


def test_no_tracked_file_mentions_a_folder_outside_the_repository() -> None:
    files = tracked_files()
    assert "bench/run.sh" in files  # the listing works (a wrong root would find nothing)
    offenders = []
    for path in files:
        full = ROOT / path
        if full.is_file() and OUTSIDE.encode() in full.read_bytes():
            offenders.append(path)
    assert offenders == [], f"these files refer to {OUTSIDE}, which a clone does not have"


def test_no_placeholder_organisation_or_local_grafana_in_links() -> None:
    """Alert links come from RUNBOOK_BASE_URL and GRAFANA_URL (.env), not from a made-up
    repository or the machine the message is read on."""
    placeholder = "example/" + "pi-crawler"
    offenders = [
        path
        for path in tracked_files()
        if (ROOT / path).is_file() and placeholder.encode() in (ROOT / path).read_bytes()
    ]
    assert offenders == []
    for path in ("alertmanager/templates/slack.tmpl", "alertmanager/alertmanager.yml"):
        assert "localhost" not in (ROOT / path).read_text()


def test_no_tracked_symlink_leads_outside_the_repository() -> None:
    """A symlink to someone's folder (a .venv committed by mistake) dangles in every clone."""
    outside = []
    for path in tracked_files():
        full = ROOT / path
        if full.is_symlink():
            target = (full.parent / os.readlink(full)).resolve()
            if ROOT.resolve() not in target.parents:
                outside.append(f"{path} -> {os.readlink(full)}")
    assert outside == []
    assert not any(p == ".venv" or p.startswith(".venv/") for p in tracked_files())


def test_readme_links_resolve_inside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t]
    assert "docs/architecture.md" in local
    missing = [t for t in local if not (ROOT / t).exists()]
    assert missing == []


def test_bench_scripts_are_shellcheck_clean() -> None:
    proc = subprocess.run(
        [require("shellcheck"), str(ROOT / "bench" / "run.sh")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout


def test_bench_runs_from_the_repository() -> None:
    """A small run of the real benchmark: every crawler does the whole work and the table comes
    out. (The first run creates .venv-bench with Scrapy.)"""
    assert Path("/usr/bin/time").exists(), "scripts/test installs Debian's package `time`"
    # A folder of its own for the run's work (PostgreSQL's cluster runs as `postgres` when we
    # are root, so it must be able to enter it), to see that nothing is left behind.
    tmp = Path(tempfile.mkdtemp(prefix="bench-test-"))
    tmp.chmod(0o755)
    try:
        proc = subprocess.run(
            [str(ROOT / "bench" / "run.sh"), "30", "1"],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "TMPDIR": str(tmp)},
        )
        left = list(tmp.iterdir())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[2:]] == [
        "| floor (aiohttp + parsel, no storage)",
        f"| Scrapy {rows[3].split()[2]} (no storage)",
        "| **pi-crawler** (metrics, JSON logs, PostgreSQL)",
    ]
    assert rows[2].split(" | ")[2] == "1.00x"
    assert "600 rows in scraped_data, 1/1 runs succeeded" in proc.stdout
    assert "PROBLEM" not in proc.stderr
    assert left == []  # its work folder and PostgreSQL cluster are gone


def test_a_wheel_built_from_a_fresh_clone_holds_every_module(tmp_path: Path) -> None:
    """pyproject.toml finds every package of the layout: the wheel a user's `pip install .`
    builds from a clone has every tracked module of crawler/ and exporters/ (issue 23)."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    tracked = {
        p.relative_to(clone).as_posix()
        for folder in ("crawler", "exporters")
        for p in (clone / folder).rglob("*.py")
    }
    assert {"crawler/cli.py", "crawler/fetch/transport.py", "crawler/config/css.py"} <= tracked
    out = tmp_path / "wheel"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(clone)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = out.glob("pi_crawler-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        packed = {n for n in zf.namelist() if n.endswith(".py")}
    assert sorted(tracked - packed) == []
