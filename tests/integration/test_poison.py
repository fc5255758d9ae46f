"""Poison never jams anything: hostile values are stored cleaned, directly and through the spool;
a run that meets an unexpected exception ends as a counted failure with a job row."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from crawler.config.root import load_config
from crawler.service import Service
from crawler.sources.extract import Extractor
from tests.crawler_proc import run_cli
from tests.helpers import free_port
from tests.site import Site

# Each record is hostile in one way; json.dumps writes them as the escapes a server would send.
POISON = [
    {"id": "nul", "text": "a\u0000b"},
    {"id": "surrogate", "text": "x\ud800y"},
    {"id": "k\u0000ey", "text": "a NUL in the key field"},
    {"id": "plain", "text": "an ordinary record"},
]
CLEANED = {
    "nul": {"id": "nul", "text": "ab"},
    "surrogate": {"id": "surrogate", "text": "x\ufffdy"},
    "key": {"id": "key", "text": "a NUL in the key field"},
    "plain": {"id": "plain", "text": "an ordinary record"},
}


@pytest.fixture
def poison_site() -> Iterator[Site]:
    s = Site()

    async def poison(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps({"items": POISON}), content_type="application/json")

    s.app.router.add_get("/poison", poison)
    s.start()
    yield s
    s.stop()


POISON_SOURCE = """\
  - name: poison
    every: 1h
    urls: ["{base}/poison"]
    parser: json
    items: items
    fields: {{id: id, text: text}}
    key: [id]
"""


def pg_rows(dsn: str) -> dict[str, object]:
    with psycopg.connect(dsn) as c:
        return dict(c.execute("select key, data from scraped_data where source = 'poison'"))


async def test_poison_values_are_stored_cleaned_directly(
    poison_site: Site, tmp_path: Path, pg_dsn: str
) -> None:
    extra = POISON_SOURCE.format(base=poison_site.base)
    cfg = load_config(config_file(tmp_path, poison_site, pg_dsn, extra=extra))
    [result] = await Service(cfg, CollectorRegistry()).once(["poison"])
    assert (result.status, result.records) == ("success", 4)
    assert pg_rows(pg_dsn) == CLEANED


async def test_poison_values_are_stored_cleaned_through_the_spool(
    poison_site: Site, tmp_path: Path, pg_dsn: str
) -> None:
    extra = POISON_SOURCE.format(base=poison_site.base)
    # The database is away: the batch goes to the spool.
    dead = f"postgresql://crawler@127.0.0.1:{free_port()}/crawler"
    registry = CollectorRegistry()
    cfg = load_config(config_file(tmp_path, poison_site, dead, extra=extra))
    [result] = await Service(cfg, registry).once(["poison"])
    assert (result.status, result.records) == ("success", 4)
    assert registry.get_sample_value("crawler_records_spooled_total", {"source": "poison"}) == 4
    # It is back (same state_dir, so the same spool): the drain moves every record.
    config_file(tmp_path, poison_site, pg_dsn, extra=extra)
    drained = run_cli("spool", "-c", str(tmp_path / "crawler.yaml"), "--drain")
    assert drained.returncode == 0, drained.stderr
    assert json.loads(drained.stdout.splitlines()[-1])["spool"]["records"] == 0
    assert pg_rows(pg_dsn) == CLEANED


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
    def broken(self: Extractor, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug nobody expected")

    # A stand-in for a bug: no real input makes extraction raise this today.
    monkeypatch.setattr(Extractor, "records", broken)
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


# --------------------------------------------------------------------------- quarantine

BAD_KEY = "p0-q7"  # the record the database refuses (a trigger), one of page 0's 20
PG_TRIGGER = f"""
CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.key = '{BAD_KEY}' THEN RAISE EXCEPTION 'refused for the test: %', NEW.key; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_one BEFORE INSERT OR UPDATE ON scraped_data
  FOR EACH ROW EXECUTE FUNCTION refuse_one();
"""


async def refusing_one_key(tmp_path: Path, site: Site, dsn: str) -> tuple[Path, Any]:
    """The config for `dsn`, whose database has the crawler's schema and a trigger that
    refuses BAD_KEY."""
    from crawler.storage.postgres import PostgresStore

    path = config_file(tmp_path, site, dsn)
    cfg = load_config(path)
    store = PostgresStore(cfg.storage)
    await store.open()
    await store.close()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(PG_TRIGGER)
    return path, cfg


def pg_keys(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as c:
        return {k for (k,) in c.execute("select key from scraped_data where source = 'api'")}


def quarantine_cli(cfg_path: Path, *flags: str) -> tuple[int, list[dict[str, Any]]]:
    done = run_cli("quarantine", "-c", str(cfg_path), *flags)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


async def test_a_record_postgresql_refuses_is_quarantined_and_the_rest_stored(
    site: Site, tmp_path: Path, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    path, cfg = await refusing_one_key(tmp_path, site, pg_dsn)
    registry = CollectorRegistry()
    with caplog.at_level(logging.INFO):
        results = await Service(cfg, registry).once()
    assert [(r.status, r.records) for r in results] == [("success", 40)]
    assert len(pg_keys(pg_dsn)) == 39 and BAD_KEY not in pg_keys(pg_dsn)
    v = registry.get_sample_value
    assert v("crawler_records_quarantined_total", {"source": "api"}) == 1
    assert v("crawler_records_stored_total", {"source": "api", "backend": "postgres"}) == 39
    assert v("crawler_quarantined_records") == 1
    [line] = [r for r in caplog.records if r.getMessage() == "record quarantined"]
    assert (line.source, line.key, line.url) == ("api", BAD_KEY, f"{site.base}/api/0")  # type: ignore[attr-defined]
    status, rows = quarantine_cli(path, "--list")
    assert status == 0 and len(rows) == 1
    assert rows[0]["key"] == BAD_KEY and rows[0]["url"] == f"{site.base}/api/0"
    assert "refused for the test: p0-q7" in rows[0]["error"] and rows[0]["refused_by"] == "postgres"
    assert rows[0]["data"]["id"] == BAD_KEY
    # Still refused: it stays, with its attempts counted; once the database takes it, it is gone.
    status, [out] = quarantine_cli(path, "--retry")
    assert (status, out) == (1, {"retried": 1, "stored": 0, "quarantined": 1})
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("DROP TRIGGER refuse_one ON scraped_data")
    status, [out] = quarantine_cli(path, "--retry")
    assert (status, out) == (0, {"retried": 1, "stored": 1, "quarantined": 0})
    assert len(pg_keys(pg_dsn)) == 40
    assert quarantine_cli(path)[1] == [
        {"quarantined": 0, "by_source": {}, "file": str(tmp_path / "var" / "spool.sqlite")}
    ]


async def test_the_spool_drains_past_a_refused_record_to_zero(
    site: Site, tmp_path: Path, pg_dsn: str
) -> None:
    dead = f"postgresql://crawler@127.0.0.1:{free_port()}/crawler"
    cfg = load_config(config_file(tmp_path, site, dead))
    [result] = await Service(cfg, CollectorRegistry()).once()
    assert (result.status, result.records) == ("success", 40)
    # The database is back, with a trigger that refuses one spooled record.
    path, cfg = await refusing_one_key(tmp_path, site, pg_dsn)
    from crawler.observability.metrics import Metrics
    from crawler.storage.sink import Sink

    registry = CollectorRegistry()
    sink = Sink(cfg, Metrics(registry))
    await sink.open(drainer=False)
    try:
        assert sink.spool is not None and sink.spool.records == 40
        await sink.drain()
        assert sink.spool.records == 0
    finally:
        await sink.close()
    assert len(pg_keys(pg_dsn)) == 39
    assert registry.get_sample_value("crawler_records_quarantined_total", {"source": "api"}) == 1
    _, [row] = quarantine_cli(path, "--list")
    assert (row["key"], row["url"]) == (BAD_KEY, f"{site.base}/api/0")
    assert quarantine_cli(path, "--drop")[1] == [{"dropped": 1}]
    assert quarantine_cli(path)[1][0]["quarantined"] == 0


async def test_a_record_the_embedded_store_refuses_is_quarantined(
    site: Site, tmp_path: Path
) -> None:
    cfg = load_config(config_file(tmp_path, site))
    [first] = await Service(cfg, CollectorRegistry()).once()  # creates the file and its schema
    assert first.status == "success"
    c = sqlite3.connect(tmp_path / "var" / "crawler.sqlite")
    c.execute(
        "CREATE TRIGGER refuse_one BEFORE UPDATE ON scraped_data"
        f" WHEN NEW.key = '{BAD_KEY}' BEGIN SELECT RAISE(ABORT, 'refused for the test'); END"
    )
    c.commit()
    c.close()
    registry = CollectorRegistry()
    [again] = await Service(cfg, registry).once()
    assert again.status == "success"
    assert registry.get_sample_value("crawler_records_quarantined_total", {"source": "api"}) == 1
    assert (
        registry.get_sample_value(
            "crawler_records_stored_total", {"source": "api", "backend": "sqlite"}
        )
        == 39
    )
    rows = sqlite_rows(tmp_path, "select source, key, refused_by from quarantine")
    assert rows == [("api", BAD_KEY, "sqlite")]
