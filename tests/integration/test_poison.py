"""Poison never jams anything: a run that meets an unexpected exception ends as a counted
failure with a job row, and the next run goes on."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from crawler.config import load_config
from crawler.extract import Extractor
from crawler.service import Service
from tests.site import Site


def config_file(tmp_path: Path, site: Site, dsn: str | None = None, extra: str = "") -> Path:
    storage = f'storage: {{dsn: "{dsn}", connect_timeout: 1s}}\n' if dsn else ""
    p = tmp_path / "crawler.yaml"
    p.write_text(f"""\
state_dir: {tmp_path}/var
log_level: DEBUG
{storage}fetch: {{politeness_delay: 0s, robots: false, conditional_get: false, retry: {{attempts: 1}}}}
sources:
  - name: api
    every: 1h
    urls: ["{site.base}/api/{{0..1}}"]
    parser: json
    items: items
    fields: {{id: id, text: text}}
    key: [id]
{extra}""")
    return p


def sqlite_rows(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    c = sqlite3.connect(tmp_path / "var" / "crawler.sqlite")
    try:
        return c.execute(sql).fetchall()
    finally:
        c.close()


async def test_unexpected_exception_in_extraction_fails_the_run_with_a_job_row(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: Extractor, body: bytes, charset: str | None = None) -> Any:
        raise RuntimeError("a bug nobody expected")

    # A stand-in for a bug: no real input makes extraction raise this today.
    monkeypatch.setattr(Extractor, "extract", broken)
    cfg = load_config(config_file(tmp_path, site))
    registry = CollectorRegistry()
    service = Service(cfg, registry)
    with caplog.at_level(logging.INFO, logger="crawler.pipeline"):
        for _ in range(2):  # every run ends the same way: nothing jams
            [result] = await service.once()
            assert result.status == "failure"
            assert result.error_kind == "internal"
            assert result.error == "internal: RuntimeError: a bug nobody expected"
    assert (
        sqlite_rows(tmp_path, "select source, status, error from crawler_jobs")
        == [("api", "failure", "internal: RuntimeError: a bug nobody expected")] * 2
    )
    v = registry.get_sample_value
    assert v("crawler_source_runs_total", {"source": "api", "outcome": "failure"}) == 2
    finished = [r for r in caplog.records if r.getMessage() == "source run finished"]
    assert [(r.levelname, getattr(r, "error_kind", None)) for r in finished] == [
        ("ERROR", "internal")
    ] * 2
    raised = [r for r in caplog.records if r.getMessage() == "source run raised"]
    assert len(raised) == 2 and raised[0].exc_info is not None
