"""Reloading the configuration of a running `crawler run` with real signals (SIGHUP).

Sources added run, removed ones stop and their series leave /metrics, changed ones take effect
from their next run (a run under way finishes with the old definition and is stored once, and
a changed extraction re-extracts pages that would answer 304), unchanged ones keep their next
run; a broken file or a changed `storage.dsn` is refused with the old configuration still
crawling; the leases follow the new source list; 200 reloads in a row lose no run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import signal
import sqlite3
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web

from tests.crawler_proc import CrawlerProcess, read_logs, run_cli, scrape
from tests.helpers import free_port, wait_for, write_config
from tests.site import Site, html_page, quote_source

FIELDS = {"id": "xpath:./@data-id", "text": "span.text::text"}
WITH_AUTHOR = {**FIELDS, "author": "small.author::text"}
REFUSED = "configuration reload refused; still running the previous configuration"


class ReloadSite(Site):
    """The test site plus `/etag/<i>` (ETag, 304 on a match) and `/slow` (held until
    `release` is set, so a run is under way for as long as the test wants)."""

    def __init__(self) -> None:
        super().__init__()
        self.not_modified = 0
        self.release = threading.Event()
        self.app.router.add_get("/etag/{i}", self._etag)
        self.app.router.add_get("/slow", self._slow)

    async def _etag(self, request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        tag = f'"v{self.version}-{i}"'
        if request.headers.get("If-None-Match") == tag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": tag})
        return web.Response(
            body=html_page(i, self.version),
            content_type="text/html",
            charset="utf-8",
            headers={"ETag": tag},
        )

    async def _slow(self, request: web.Request) -> web.Response:
        # Set from the test's thread: waited for on an executor thread, not on this loop.
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 120)
        return web.Response(body=html_page(7), content_type="text/html", charset="utf-8")


def source(name: str, url: str, every: str, fields: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "every": every, "url": url, "items": "div.quote", "fields": fields,
            "key": ["id"]}  # fmt: skip


def rows(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        if conn.execute("select to_regclass('crawler_jobs')").fetchone() == (None,):
            return []
        return conn.execute(sql, args).fetchall()


def runs_of(dsn: str, name: str) -> list[tuple[Any, ...]]:
    return rows(
        dsn,
        "select status, extract(epoch from started_at)::float8, records from crawler_jobs"
        " where source = %s order by started_at",
        name,
    )


def logged(log: Path, message: str, after: int = 0) -> list[dict[str, Any]]:
    return [e for e in read_logs(log)[after:] if e.get("message") == message]


def series(port: int, name: str) -> dict[str, float]:
    return {k: v for k, v in scrape(port).items() if k.startswith(name)}


def test_reload_adds_removes_changes_and_refuses_while_crawling(tmp_path: Path, pg_dsn: str):
    site = ReloadSite().start()
    port = free_port()
    base = site.base
    common = {
        "instance": "reloader",
        "metrics": {"listen": f"127.0.0.1:{port}"},
        "storage": {"dsn": pg_dsn},
        "lease_ttl": "6s",
        "fetch": {"retry": {"attempts": 1}},  # conditional GET on (the default)
    }
    v1 = [
        source("steady", f"{base}/page/0", "1h", FIELDS),
        source("etagged", f"{base}/etag/0", "1s", FIELDS),
        source("doomed", f"{base}/page/1", "1s", FIELDS),
        source("slow", f"{base}/slow", "1h", FIELDS),
    ]
    v2 = [
        v1[0],
        source("etagged", f"{base}/etag/0", "1s", WITH_AUTHOR),
        source("slow", f"{base}/slow", "1h", WITH_AUTHOR),
        source("fresh", f"{base}/page/2", "1h", FIELDS),
    ]
    config = write_config(tmp_path, **common, sources=v1)
    log = tmp_path / "crawler.log"
    crawler = CrawlerProcess(config, log)
    pid = crawler.proc.pid
    try:
        # Every source crawling; the etagged page answers 304 to the crawler's validators.
        wait_for(lambda: site.not_modified >= 2 and runs_of(pg_dsn, "doomed"), timeout=60)
        wait_for(lambda: site.hits["/slow"] == 1 and runs_of(pg_dsn, "steady"), timeout=30)
        before = scrape(port)
        assert before["crawler_config_last_reload_successful"] == 1
        steady_next = before['crawler_source_next_run_timestamp_seconds{source="steady"}']
        assert 'crawler_source_runs_total{outcome="success",source="doomed"}' in before
        assert {r[0] for r in rows(pg_dsn, "select source from crawler_leases")} == {
            "steady",
            "etagged",
            "doomed",
            "slow",
        }

        # -- add, remove, change, with a run of `slow` under way --------------------------------
        config = write_config(tmp_path, **common, sources=v2)
        seen = len(read_logs(log))
        reloaded_at = time.time()
        crawler.proc.send_signal(signal.SIGHUP)
        done = wait_for(lambda: logged(log, "configuration reloaded", seen), timeout=30)
        assert isinstance(done, list)
        assert done[0]["added"] == ["fresh"]
        assert done[0]["removed"] == ["doomed"]
        assert done[0]["changed"] == ["etagged", "slow"]
        assert done[0]["level"] == "INFO"

        # The removed source: its series leave /metrics and it runs no more.
        wait_for(lambda: not [k for k in scrape(port) if 'source="doomed"' in k], timeout=30)
        doomed_runs, doomed_hits = len(runs_of(pg_dsn, "doomed")), site.hits["/page/1"]
        # The added source runs.
        wait_for(lambda: runs_of(pg_dsn, "fresh"), timeout=30)

        # The changed extraction re-extracts the page that answered 304 before: the new field
        # is in every record, then the page answers 304 again (new validators recorded).
        def authored() -> bool:
            found = rows(
                pg_dsn,
                "select count(*) from scraped_data where source = 'etagged' and data ? 'author'",
            )
            return bool(found) and found[0][0] == 20

        wait_for(authored, timeout=30)
        answered = site.not_modified
        wait_for(lambda: site.not_modified > answered, timeout=30)
        # The run under way since before the reload finishes, with the old definition, once.
        assert runs_of(pg_dsn, "slow") == []
        site.release.set()
        wait_for(lambda: runs_of(pg_dsn, "slow"), timeout=30)
        slow = runs_of(pg_dsn, "slow")
        assert len(slow) == 1 and slow[0][0] == "success" and slow[0][1] < reloaded_at
        stored = rows(pg_dsn, "select data from scraped_data where source = 'slow'")
        assert len(stored) == 20 and not any("author" in d[0] for d in stored)
        # The leases follow the new source list.
        wait_for(
            lambda: (
                {r[0] for r in rows(pg_dsn, "select source from crawler_leases")}
                == {"steady", "etagged", "slow", "fresh"}
            ),
            timeout=30,
        )
        # Unchanged: not run again, next run where it was.
        after = scrape(port)
        assert after['crawler_source_next_run_timestamp_seconds{source="steady"}'] == steady_next
        assert len(runs_of(pg_dsn, "steady")) == 1
        assert after["crawler_config_last_reload_successful"] == 1
        assert after["crawler_config_last_reload_success_timestamp_seconds"] >= reloaded_at
        digest = hashlib.sha256(config.read_bytes()).hexdigest()[:12]
        assert after[f'crawler_config_info{{hash="{digest}"}}'] == 1
        assert len([k for k in after if k.startswith("crawler_config_info{")]) == 1
        time.sleep(2.5)  # `doomed` ran every second: two more seconds without one
        assert len(runs_of(pg_dsn, "doomed")) == doomed_runs
        assert site.hits["/page/1"] == doomed_hits

        # -- refused: a broken file, then a changed storage.dsn ---------------------------------
        text = config.read_text()
        config.write_text(text.replace("every: 1s", "every: soon"))
        seen = len(read_logs(log))
        crawler.proc.send_signal(signal.SIGHUP)
        refused = wait_for(lambda: logged(log, REFUSED, seen), timeout=30)
        assert isinstance(refused, list) and refused[0]["level"] == "ERROR"
        problems = refused[0]["problems"]
        assert problems and all(
            re.match(rf"{re.escape(str(config))}:\d+: sources\.etagged\.every: ", p)
            for p in problems
        ), problems
        assert scrape(port)["crawler_config_last_reload_successful"] == 0
        etagged = len(runs_of(pg_dsn, "etagged"))
        wait_for(lambda: len(runs_of(pg_dsn, "etagged")) >= etagged + 2, timeout=30)

        other = pg_dsn.rsplit("/", 1)[0] + "/postgres"
        config.write_text(text.replace(pg_dsn, other))
        seen = len(read_logs(log))
        crawler.proc.send_signal(signal.SIGHUP)
        refused = wait_for(lambda: logged(log, REFUSED, seen), timeout=30)
        assert isinstance(refused, list)
        assert len(refused[0]["problems"]) == 1
        assert re.match(
            rf"{re.escape(str(config))}:\d+: storage\.dsn: .*restart to apply",
            refused[0]["problems"][0],
        )
        assert pg_dsn not in refused[0]["problems"][0]  # a DSN never goes to the log
        assert scrape(port)["crawler_config_last_reload_successful"] == 0
        etagged = len(runs_of(pg_dsn, "etagged"))
        wait_for(lambda: len(runs_of(pg_dsn, "etagged")) >= etagged + 2, timeout=30)
        assert (
            rows(pg_dsn, "select count(*) from crawler_jobs where source = 'doomed'")[0][0]
            == doomed_runs
        )  # the refused files name `doomed` no more than v2 does

        # -- `crawler reload` puts the good file back -------------------------------------------
        config.write_text(text)
        result = run_cli("reload", "-c", str(config))
        assert result.returncode == 0, result.stderr
        assert "reloaded" in result.stdout
        assert scrape(port)["crawler_config_last_reload_successful"] == 1
        assert crawler.proc.pid == pid and crawler.proc.poll() is None
    finally:
        site.release.set()
        assert crawler.stop() == 0
        site.stop()
    # Every run that started was stored once.
    logs = read_logs(log)
    started = [e["source"] for e in logs if e.get("message") == "source run started"]
    stored_runs = rows(pg_dsn, "select source from crawler_jobs")
    assert sorted(started) == sorted(r[0] for r in stored_runs)


def test_conditional_get_validators_belong_to_the_extraction_after_a_restart_too(
    tmp_path: Path,
):
    """A field added while the crawler was stopped appears on a page that answers 304."""
    etag_site = ReloadSite().start()
    try:
        url = f"{etag_site.base}/etag/3"
        first = write_config(tmp_path, sources=[source("s", url, "1h", FIELDS)])
        assert run_cli("once", "-c", str(first)).returncode == 0
        assert run_cli("once", "-c", str(first)).returncode == 0
        assert etag_site.not_modified == 1  # the second run: a 304, nothing extracted
        second = write_config(tmp_path, sources=[source("s", url, "1h", WITH_AUTHOR)])
        assert run_cli("once", "-c", str(second)).returncode == 0
        assert etag_site.not_modified == 1  # the changed definition asked for the whole page
        out = run_cli("export", "-c", str(second))
        assert out.returncode == 0, out.stderr
        assert out.stdout.count('"author"') == 20
        assert run_cli("once", "-c", str(second)).returncode == 0
        assert etag_site.not_modified == 2  # and its validators count again
    finally:
        etag_site.stop()


def test_two_crawlers_reload_on_their_own_and_the_leases_follow(
    tmp_path: Path, site: Site, pg_dsn: str
):
    def config(name: str, names: list[str]) -> Path:
        return write_config(
            tmp_path,
            f"{name}.yaml",
            instance=name,
            state_dir=str(tmp_path / name),
            metrics={"listen": f"127.0.0.1:{ports[name]}"},
            lease_ttl="3s",
            storage={"dsn": pg_dsn},
            sources=[quote_source(n, [f"{site.base}/page/{n[1:]}"], every="500ms") for n in names],
        )

    def leases() -> dict[str, str]:
        return dict(rows(pg_dsn, "select source, holder from crawler_leases"))

    ports = {"pi-a": free_port(), "pi-b": free_port()}
    old, new = ["s0", "s1", "s2", "s3"], ["s0", "s1", "s4", "s5"]
    a = CrawlerProcess(config("pi-a", old), tmp_path / "a.log")
    b = CrawlerProcess(config("pi-b", old), tmp_path / "b.log")
    try:
        wait_for(lambda: set(leases()) == set(old), timeout=60, interval=0.2)
        for name, proc in (("pi-a", a), ("pi-b", b)):
            config(name, new)
            proc.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: set(leases()) == set(new), timeout=30, interval=0.2)
        # Each crawler holds some: the new list is shared, not taken by one.
        wait_for(lambda: len(set(leases().values())) == 2, timeout=30, interval=0.2)
        since = time.time()
        wait_for(
            lambda: {r[0] for r in rows(pg_dsn, "select source from crawler_jobs where"
                                              " finished_at > to_timestamp(%s)", since)}
            == set(new),
            timeout=30,
        )  # fmt: skip
    finally:
        codes = (a.stop(), b.stop())
        assert codes == (0, 0)


def status_of(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as r:
        document: dict[str, Any] = json.loads(r.read())
    return document


def test_200_reloads_in_a_row_lose_no_run_and_leak_no_task_or_memory(tmp_path: Path, site: Site):
    """A source runs every second while the file flips 200 times between two versions (the
    source's fields changed, another source added and removed). Figures: printed (-s)."""
    port = free_port()

    def write(flip: bool) -> Path:
        fields = {"text": "span.text::text", **({"author": "small.author::text"} if flip else {})}
        sources = [quote_source("busy", [f"{site.base}/page/0"], every="1s", fields=fields)]
        if flip:
            sources.append(quote_source("extra", [f"{site.base}/page/1"]))
        return write_config(
            tmp_path, metrics={"listen": f"127.0.0.1:{port}"}, log_level="INFO", sources=sources
        )

    config = write(False)
    log = tmp_path / "crawler.log"
    crawler = CrawlerProcess(config, log)
    try:
        wait_for(lambda: _answers(port) and len(_finished(log, "busy")) >= 2, timeout=60)
        time.sleep(1)
        first = status_of(port)["crawler"]
        rss_before = scrape(port)["process_resident_memory_bytes"]
        started = time.monotonic()
        runs_before = len(_finished(log, "busy"))
        for i in range(1, RELOADS + 1):
            write(i % 2 == 1)
            crawler.proc.send_signal(signal.SIGHUP)
            wait_for(lambda i=i: status_of(port)["crawler"]["reload"]["attempts"] >= i, timeout=30)
            time.sleep(0.1)  # ten a second: the storm spans many of `busy`'s runs
        took = time.monotonic() - started
        runs_during = len(_finished(log, "busy")) - runs_before
        time.sleep(3)  # the last reload's runs end; nothing left behind
        last = status_of(port)["crawler"]
        rss_after = scrape(port)["process_resident_memory_bytes"]
        assert last["reload"]["ok"] and last["reload"]["attempts"] == RELOADS
        print(
            f"\n{RELOADS} reloads in {took:.1f}s; busy ran {runs_during} times meanwhile;"
            f" tasks {first['tasks']} -> {last['tasks']};"
            f" RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB"
        )
        assert last["tasks"] <= first["tasks"] + 2  # a run or two may be under way
        assert rss_after - rss_before < 16 * 2**20
        assert runs_during >= 1
    finally:
        assert crawler.stop() == 0
    logs = read_logs(log)
    reloaded = [e for e in logs if e.get("message") == "configuration reloaded"]
    assert len(reloaded) == RELOADS
    assert sum(e["added"] == ["extra"] for e in reloaded) == RELOADS // 2
    assert sum(e["removed"] == ["extra"] for e in reloaded) == RELOADS // 2
    # No run lost: every run that started finished and was stored, once.
    for name in ("busy", "extra"):
        started_runs = [e for e in logs if e.get("message") == "source run started"
                        and e.get("source") == name]  # fmt: skip
        assert len(started_runs) == len(_finished(log, name))
    db = sqlite3.connect(tmp_path / "var" / "crawler.sqlite")
    try:
        stored = dict(db.execute("select source, count(*) from crawler_jobs group by source"))
    finally:
        db.close()
    assert stored["busy"] == len(_finished(log, "busy"))
    assert stored.get("extra", 0) == len(_finished(log, "extra"))


RELOADS = 200


def _finished(log: Path, name: str) -> list[dict[str, Any]]:
    return [
        e
        for e in read_logs(log)
        if e.get("message") == "source run finished" and e.get("source") == name
    ]


def _answers(port: int) -> bool:
    try:
        status_of(port)
    except OSError:
        return False
    return True
