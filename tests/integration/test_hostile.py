"""The crawler against a hostile site (tests/hostile_site.py): each case ends as it should.

For every case: the right outcome, the right metric and log field, the process still fetching
afterwards, and for the big bodies, peak memory bounded (measured in a subprocess).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from crawler.config.root import Config, load_config
from crawler.errors import ErrorKind, FetchError
from crawler.fetch.client import Fetcher
from crawler.observability.metrics import Metrics
from crawler.service import Service
from crawler.sources.extract import Extractor
from tests.helpers import merge, write_config
from tests.hostile_site import HostileSite, bomb

CAP = 4 * 2**20
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hostile() -> Iterator[HostileSite]:
    s = HostileSite().start()
    yield s
    s.stop()


def source(name: str, url: str, parser: str = "html", **extra: Any) -> dict[str, Any]:
    if parser == "json":
        spec: dict[str, Any] = {"items": "items", "fields": {"id": "id"}}
    else:
        spec = {"items": "div.quote", "fields": {"text": "span.text::text"}}
    return {"name": name, "every": "1h", "urls": [url], "parser": parser, **spec, **extra}


def make_config(tmp_path: Path, sources: list[dict[str, Any]], **fetch: Any) -> Config:
    """A config with short timeouts and a tiny backoff, so every case runs in well under 2 s."""
    f: dict[str, Any] = {
        "politeness_delay": 0,
        "connect_timeout": 1,
        "read_timeout": 0.3,
        "total_timeout": 5,
        "max_response_bytes": CAP,
        "max_redirects": 3,
        "retry": {"attempts": 3, "base": 0.01, "max": 0.05, "give_up_after": 10},
        "robots": True,
    }
    path = write_config(
        tmp_path, state_dir=str(tmp_path / "state"), fetch=merge(f, fetch), sources=sources
    )
    return load_config(path)


class Run:
    """A fetcher on a fresh registry, as the crawler process holds it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.fetcher = Fetcher(config, self.metrics)

    def value(self, name: str, **labels: str) -> float:
        v = self.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v

    async def fetch(self, path: str, name: str | None = None, commit: bool = True) -> Any:
        """Fetch as the pipeline does; `commit` stands for "its records were stored"."""
        src = self.config.source(name) if name else self.config.sources[0]
        url = src.urls[0].rsplit("/", 1)[0] + path if path else src.urls[0]
        page = await self.fetcher.fetch(src, url)
        if commit:
            self.fetcher.commit(src, url, page.validators)
        return page

    async def alive(self, hostile: HostileSite) -> None:
        """The process is still well: a plain page still fetches."""
        src = self.config.sources[0]
        page = await self.fetcher.fetch(src, f"{hostile.base}/ok")
        assert page.status == 200 and b"quote" in page.body


def attempt_logs(caplog: pytest.LogCaptureFixture, url_end: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "crawler.fetch" and getattr(r, "url", "").endswith(url_end)
    ]


# --------------------------------------------------------------------------- retries


async def test_slow_response_times_out_and_is_retried(
    tmp_path: Path, hostile: HostileSite, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(tmp_path, [source("s", f"{hostile.base}/slow")], retry={"attempts": 2})
    run = Run(cfg)
    async with run.fetcher:
        started = time.monotonic()
        with pytest.raises(FetchError) as err:
            await run.fetch("")
        assert time.monotonic() - started < 2.0  # 2 x read_timeout 0.3 s, not the 1 s sleep
        assert err.value.kind is ErrorKind.TIMEOUT
        await run.alive(hostile)
    assert hostile.hits["/slow"] == 2
    assert run.value("crawler_fetch_retries_total", source="s", error_kind="timeout") == 1
    logs = attempt_logs(caplog, "/slow")
    assert [(r.attempt, r.error_kind, r.levelname) for r in logs] == [  # type: ignore[attr-defined]
        (1, "timeout", "WARNING"),
        (2, "timeout", "WARNING"),
    ]
    assert all(r.source == "s" for r in logs)  # type: ignore[attr-defined]


async def test_dripping_body_hits_the_total_timeout(tmp_path: Path, hostile: HostileSite) -> None:
    cfg = make_config(
        tmp_path, [source("s", f"{hostile.base}/drip")], total_timeout=0.8, retry={"attempts": 1}
    )
    run = Run(cfg)
    async with run.fetcher:
        started = time.monotonic()
        with pytest.raises(FetchError) as err:
            await run.fetch("")
        assert time.monotonic() - started < 1.5  # not the 10 s the drip would take
        assert err.value.kind is ErrorKind.TIMEOUT
        await run.alive(hostile)


async def test_500_then_200_succeeds_on_the_second_attempt(
    tmp_path: Path, hostile: HostileSite, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(tmp_path, [source("s", f"{hostile.base}/flaky")])
    run = Run(cfg)
    async with run.fetcher:
        page = await run.fetch("")
        await run.alive(hostile)
    assert page.status == 200 and page.attempts == 2
    assert hostile.hits["/flaky"] == 2
    assert run.value("crawler_fetch_retries_total", source="s", error_kind="http_5xx") == 1
    assert (
        run.value(
            "crawler_requests_total",
            source="s",
            host=cfg.sources[0].urls[0].split("/")[2],
            status_class="5xx",
        )
        == 1
    )
    (log,) = attempt_logs(caplog, "/flaky")
    assert (log.attempt, log.status, log.error_kind) == (1, 500, "http_5xx")  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/limited", "/unavailable"])
async def test_retry_after_seconds_is_honoured(
    tmp_path: Path, hostile: HostileSite, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    cfg = make_config(tmp_path, [source("s", f"{hostile.base}{path}")])
    run = Run(cfg)
    async with run.fetcher:
        page = await run.fetch("")
        await run.alive(hostile)
    first, second = hostile.times[path]
    assert second - first >= 0.95  # Retry-After: 1, while the backoff alone would wait ≤ 0.05 s
    assert page.status == 200
    kind = "http_4xx" if path == "/limited" else "http_5xx"
    assert run.value("crawler_fetch_retries_total", source="s", error_kind=kind) == 1
    (log,) = attempt_logs(caplog, path)
    assert log.status == (429 if path == "/limited" else 503)  # type: ignore[attr-defined]
    assert 950 <= log.retry_in_ms <= 1000  # type: ignore[attr-defined]


async def test_retry_after_http_date_is_capped_by_config(
    tmp_path: Path, hostile: HostileSite
) -> None:
    hostile.retry_after = "Wed, 21 Oct 2099 07:28:00 GMT"  # decades away
    cfg = make_config(
        tmp_path, [source("s", f"{hostile.base}/limited")], retry={"retry_after_max": 0.3}
    )
    run = Run(cfg)
    async with run.fetcher:
        page = await run.fetch("")
    first, second = hostile.times["/limited"]
    assert page.status == 200
    assert 0.28 <= second - first < 1.0


async def test_retry_after_past_the_give_up_bound_gives_up_at_once(
    tmp_path: Path, hostile: HostileSite
) -> None:
    hostile.retry_after = "30"
    cfg = make_config(
        tmp_path,
        [source("s", f"{hostile.base}/limited")],
        retry={"give_up_after": 2, "retry_after_max": 60},
    )
    run = Run(cfg)
    async with run.fetcher:
        started = time.monotonic()
        with pytest.raises(FetchError) as err:
            await run.fetch("")
        assert time.monotonic() - started < 1.0
    assert err.value.kind is ErrorKind.HTTP_4XX and err.value.status == 429
    assert hostile.hits["/limited"] == 1
    assert run.value("crawler_fetch_retries_total", source="s", error_kind="http_4xx") == 0


async def test_connection_reset_mid_body_is_a_retried_connect_error(
    tmp_path: Path, hostile: HostileSite, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(tmp_path, [source("s", f"{hostile.base}/reset")])
    run = Run(cfg)
    async with run.fetcher:
        with pytest.raises(FetchError) as err:
            await run.fetch("")
        await run.alive(hostile)
    assert err.value.kind is ErrorKind.CONNECT
    assert hostile.hits["/reset"] == 3
    assert run.value("crawler_fetch_retries_total", source="s", error_kind="connect") == 2
    assert [r.attempt for r in attempt_logs(caplog, "/reset")] == [1, 2, 3]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- size and shape


@pytest.mark.parametrize("path", ["/huge", "/huge-chunked", "/bomb"])
async def test_big_bodies_stop_at_the_cap(
    tmp_path: Path, hostile: HostileSite, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    bomb()  # built before the clock runs: the site builds it lazily on its own loop
    cfg = make_config(tmp_path, [source("s", f"{hostile.base}{path}")])
    run = Run(cfg)
    async with run.fetcher:
        with pytest.raises(FetchError) as err:
            await run.fetch("")
        await run.alive(hostile)
    assert err.value.kind is ErrorKind.TOO_LARGE
    assert hostile.hits[path] == 1  # never retried: it would be just as big again
    assert run.value("crawler_response_bytes_total", source="s") < 100_000  # only /ok counted
    (log,) = attempt_logs(caplog, path)
    assert log.error_kind == "too_large"  # type: ignore[attr-defined]


# Peak RSS of the fetch alone: the kernel's high-water mark (VmHWM) is reset after the warm-up
# (writing 5 to clear_refs), so peaks from imports or the warm-up cannot hide the fetch's own.
_PROBE = """
import asyncio, json, re, sys
from crawler.config.root import load_config
from crawler.errors import FetchError
from crawler.fetch.client import Fetcher
from crawler.observability.metrics import Metrics

def kib(field):
    with open("/proc/self/status") as f:
        return int(re.search(field + r":\\s+(\\d+)", f.read()).group(1))

async def main(config, url, warm_up):
    cfg = load_config(config)
    src = cfg.sources[0]
    async with Fetcher(cfg, Metrics()) as fetcher:
        await fetcher.fetch(src, warm_up)  # imports, session, first-use allocations
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = kib("VmRSS")
        try:
            await fetcher.fetch(src, url)
            kind = None
        except FetchError as exc:
            kind = exc.kind.value
        peak = kib("VmHWM")
    print(json.dumps({"before_kib": before, "peak_kib": peak, "kind": kind}))

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.parametrize("path", ["/bomb", "/huge", "/huge-chunked"])
def test_peak_memory_stays_near_the_cap(tmp_path: Path, hostile: HostileSite, path: str) -> None:
    """The 1 GiB gzip bomb and the 200 MB bodies raise peak RSS by at most the cap + 4 MiB."""
    if path == "/bomb":
        bomb()  # build it before timing anything
    cfg = make_config(tmp_path, [source("s", f"{hostile.base}/ok")], retry={"attempts": 1})
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(cfg.path), hostile.base + path, hostile.base + "/ok"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["kind"] == "too_large"
    grown = (result["peak_kib"] - result["before_kib"]) * 1024
    print(f"{path}: peak RSS grew by {grown / 2**20:.1f} MiB with a cap of {CAP / 2**20:.0f} MiB")
    assert grown <= CAP + 4 * 2**20


@pytest.mark.parametrize("engine", ["auto", "lxml"])
async def test_malformed_html_is_parsed_leniently(
    tmp_path: Path, hostile: HostileSite, engine: str
) -> None:
    cfg = make_config(tmp_path, [source("s", f"{hostile.base}/malformed", html_engine=engine)])
    run = Run(cfg)
    async with run.fetcher:
        page = await run.fetch("")
    extractor = Extractor(cfg.sources[0])
    assert extractor.engine == ("lexbor" if engine == "auto" else "lxml")
    records = extractor.extract(page.body, page.charset)
    texts = [r.data["text"] for r in records]
    if engine == "lxml":
        assert texts == ["Broken <<<>>>", "Still here\ufffd"]  # the NUL byte is replaced
    else:
        # Broken markup is where the trees differ (docs/config.md, "HTML engines"): an HTML5
        # parser makes the stray `</p>` an empty <p>, so the span's first text node ends
        # before the (replaced) NUL byte.
        assert texts == ["Broken <<<>>>", "Still here"]
        second = extractor.parse(page.body, page.charset).css("span.text")[1]
        assert second.text() == "Still here\ufffd&bogus; &#xZZ; "


async def test_invalid_json_is_a_parse_error_in_the_pipeline(
    tmp_path: Path, hostile: HostileSite, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(tmp_path, [source("j", f"{hostile.base}/invalid-json", parser="json")])
    registry = CollectorRegistry()
    (result,) = await Service(cfg, registry).once()
    assert result.status == "failure" and result.errors == {"parse": 1}
    assert (
        registry.get_sample_value(
            "crawler_fetch_errors_total", {"source": "j", "error_kind": "parse"}
        )
        == 1
    )
    failed = [
        r for r in caplog.records if r.name == "crawler.pipeline" and r.message == "fetch failed"
    ]
    assert [r.error_kind for r in failed] == ["parse"]  # type: ignore[attr-defined]


async def test_wrong_content_type_is_bad_content(tmp_path: Path, hostile: HostileSite) -> None:
    cfg = make_config(
        tmp_path,
        [
            source("h", f"{hostile.base}/wrong-type"),
            source("j", f"{hostile.base}/ok", parser="json"),
        ],
    )
    run = Run(cfg)
    async with run.fetcher:
        for name in ("h", "j"):
            with pytest.raises(FetchError) as err:
                await run.fetch("", name)
            assert err.value.kind is ErrorKind.BAD_CONTENT
        await run.alive(hostile)
    assert hostile.hits["/wrong-type"] == 1


async def test_redirect_loop_stops_at_the_limit(
    tmp_path: Path, hostile: HostileSite, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(tmp_path, [source("s", f"{hostile.base}/loop")])
    run = Run(cfg)
    async with run.fetcher:
        with pytest.raises(FetchError) as err:
            await run.fetch("")
        await run.alive(hostile)
    assert err.value.kind is ErrorKind.REDIRECT
    # Stops once `max_redirects` (3) responses were redirects, as aiohttp counts; never retried.
    assert hostile.hits["/loop"] + hostile.hits["/loop2"] == 3
    (log,) = attempt_logs(caplog, "/loop")
    assert log.error_kind == "redirect"  # type: ignore[attr-defined]


async def test_redirect_to_another_host_obeys_that_hosts_robots(
    tmp_path: Path, hostile: HostileSite
) -> None:
    """Every hop is checked like a first request: a redirect into a path the other host's
    robots.txt disallows is refused before it is requested; an allowed one is followed."""
    from aiohttp import web

    origin = HostileSite()

    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{hostile.base}{request.query['to']}")

    origin.app.router.add_get("/away", away)
    origin.start()
    try:
        cfg = make_config(tmp_path, [source("s", f"{origin.base}/away")])
        run = Run(cfg)
        src = cfg.sources[0]
        async with run.fetcher:
            with pytest.raises(FetchError) as err:
                await run.fetcher.fetch(src, f"{origin.base}/away?to=/private/page")
            page = await run.fetcher.fetch(src, f"{origin.base}/away?to=/ok")
    finally:
        origin.stop()
    assert err.value.kind is ErrorKind.ROBOTS_DENIED
    assert str(err.value).endswith("/private/page: disallowed by robots.txt")
    assert hostile.hits["/private/page"] == 0 and hostile.hits["/robots.txt"] == 1
    assert page.status == 200 and hostile.hits["/ok"] == 1


@pytest.mark.parametrize("path", ["/latin1", "/latin1-meta", "/nocharset"])
async def test_charset_from_header_meta_or_utf8(
    tmp_path: Path, hostile: HostileSite, path: str
) -> None:
    cfg = make_config(
        tmp_path,
        [{**source("s", f"{hostile.base}{path}"), "items": None, "fields": {"t": "p.t::text"}}],
    )
    run = Run(cfg)
    async with run.fetcher:
        page = await run.fetch("")
    expected = "utf-8" if path == "/nocharset" else "iso8859-1"
    assert page.charset == expected
    (record,) = Extractor(cfg.sources[0]).extract(page.body, page.charset)
    assert record.data["t"] == "Café crème, déjà vu"


# --------------------------------------------------------------------------- robots.txt


async def test_robots_disallowed_path_is_never_requested(
    tmp_path: Path, hostile: HostileSite, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(tmp_path, [source("s", f"{hostile.base}/private/page")])
    registry = CollectorRegistry()
    (result,) = await Service(cfg, registry).once()
    assert result.errors == {"robots_denied": 1}
    assert hostile.hits["/private/page"] == 0
    assert hostile.hits["/robots.txt"] == 1
    assert registry.get_sample_value("crawler_robots_fetches_total", {"outcome": "ok"}) == 1
    assert (
        registry.get_sample_value(
            "crawler_fetch_errors_total", {"source": "s", "error_kind": "robots_denied"}
        )
        == 1
    )
    failed = [
        r for r in caplog.records if r.name == "crawler.pipeline" and r.message == "fetch failed"
    ]
    assert [r.error_kind for r in failed] == ["robots_denied"]  # type: ignore[attr-defined]


async def test_robots_opt_out_per_source(tmp_path: Path, hostile: HostileSite) -> None:
    cfg = make_config(tmp_path, [source("s", f"{hostile.base}/private/page", robots=False)])
    run = Run(cfg)
    async with run.fetcher:
        page = await run.fetch("")
    assert page.status == 200
    assert hostile.hits["/private/page"] == 1 and hostile.hits["/robots.txt"] == 0


async def test_robots_is_fetched_once_per_host_and_ttl(
    tmp_path: Path, hostile: HostileSite
) -> None:
    cfg = make_config(tmp_path, [source("s", f"{hostile.base}/ok/1")])
    run = Run(cfg)
    async with run.fetcher:
        await asyncio.gather(*(run.fetch(f"/{i}") for i in range(5)))
    assert hostile.hits["/robots.txt"] == 1
    assert (
        run.value(
            "crawler_requests_total",
            source="robots",
            host=f"127.0.0.1:{hostile.port}",
            status_class="2xx",
        )
        == 1
    )


@pytest.mark.parametrize(
    ("status", "allowed", "outcome"), [(404, True, "missing"), (503, False, "error")]
)
async def test_robots_fetch_failures(
    tmp_path: Path, hostile: HostileSite, status: int, allowed: bool, outcome: str
) -> None:
    """A missing robots.txt allows everything; a failing one disallows (for ERROR_TTL),
    reported with the robots fetch's own error kind (here http_5xx), not as a refusal."""
    hostile.robots_status = status
    cfg = make_config(tmp_path, [source("s", f"{hostile.base}/ok")])
    run = Run(cfg)
    async with run.fetcher:
        for _ in range(2):
            if allowed:
                await run.fetch("")
            else:
                with pytest.raises(FetchError) as err:
                    await run.fetch("")
                assert err.value.kind is ErrorKind.HTTP_5XX
    assert hostile.hits["/ok"] == (2 if allowed else 0)
    assert hostile.hits["/robots.txt"] == 1  # the failure is cached too: no hammering
    assert run.value("crawler_robots_fetches_total", outcome=outcome) == 1


async def test_crawl_delay_spaces_requests(tmp_path: Path, hostile: HostileSite) -> None:
    hostile.robots = "User-agent: *\nCrawl-delay: 0.3\n"
    cfg = make_config(tmp_path, [source("s", f"{hostile.base}/ok/1")], politeness_delay=0.1)
    run = Run(cfg)
    async with run.fetcher:
        await asyncio.gather(*(run.fetch(f"/{i}") for i in range(3)))
    starts = sorted(t for p, ts in hostile.times.items() if p.startswith("/ok/") for t in ts)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 2 and min(gaps) >= 0.28, gaps


async def test_huge_crawl_delay_is_capped(tmp_path: Path, hostile: HostileSite) -> None:
    hostile.robots = "User-agent: *\nCrawl-delay: 86400\n"
    cfg = make_config(tmp_path, [source("s", f"{hostile.base}/ok/1")], crawl_delay_max="200ms")
    assert cfg.fetch.crawl_delay_max == 0.2
    run = Run(cfg)
    async with run.fetcher:
        started = time.monotonic()
        await asyncio.gather(*(run.fetch(f"/{i}") for i in range(3)))
        assert 0.38 <= time.monotonic() - started < 1.5


async def test_politeness_delay_is_shared_by_sources_of_one_host(
    tmp_path: Path, hostile: HostileSite
) -> None:
    cfg = make_config(
        tmp_path,
        [source("a", f"{hostile.base}/ok/1"), source("b", f"{hostile.base}/ok/2")],
        politeness_delay=0.2,
        robots=False,
    )
    run = Run(cfg)
    async with run.fetcher:
        await asyncio.gather(*(run.fetch(f"/{i}", name) for name in "ab" for i in range(2)))
    starts = sorted(t for p, ts in hostile.times.items() if p.startswith("/ok/") for t in ts)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 3 and min(gaps) >= 0.18, gaps


# --------------------------------------------------------------------------- conditional GET


async def test_etag_resource_is_200_once_then_304(tmp_path: Path, hostile: HostileSite) -> None:
    cfg = make_config(tmp_path, [source("e", f"{hostile.base}/etag")])
    statuses = []
    for run_no in range(3):  # three crawler processes in a row, sharing state_dir
        registry = CollectorRegistry()
        (result,) = await Service(cfg, registry).once()
        assert result.status == "success"
        statuses.append((result.pages, result.not_modified))
        host = f"127.0.0.1:{hostile.port}"
        if run_no:
            assert registry.get_sample_value("crawler_not_modified_total", {"source": "e"}) == 1
            assert (
                registry.get_sample_value(
                    "crawler_requests_total", {"source": "e", "host": host, "status_class": "3xx"}
                )
                == 1
            )
    assert statuses == [(1, 0), (0, 1), (0, 1)]
    sent = [h.get("If-None-Match") for h in hostile.seen_headers["/etag"]]
    assert sent == [None, '"v1"', '"v1"']
    # A changed resource is fetched and extracted again.
    hostile.etag_version = 2
    (result,) = await Service(cfg, CollectorRegistry()).once()
    assert (result.pages, result.not_modified) == (1, 0)


async def test_unchanged_body_hash_counts_as_not_modified(
    tmp_path: Path, hostile: HostileSite
) -> None:
    cfg = make_config(tmp_path, [source("s", f"{hostile.base}/same")])
    run = Run(cfg)
    async with run.fetcher:
        first = await run.fetch("")
        second = await run.fetch("")
        assert run.fetcher.state is not None
        await run.fetcher.state.flush()
        writes = run.fetcher.state.writes
        third = await run.fetch("")
        await run.fetcher.state.flush()
        assert run.fetcher.state.writes == writes  # nothing changed, nothing written
    assert (first.not_modified, second.not_modified, third.not_modified) == (False, True, True)
    assert hostile.hits["/same"] == 3


# --------------------------------------------------------------------------- circuit breaker


async def test_circuit_opens_fails_fast_half_opens_and_closes(
    tmp_path: Path, hostile: HostileSite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="crawler")
    hostile.down = True
    cfg = make_config(
        tmp_path,
        [source("s", f"{hostile.base}/down")],
        retry={"attempts": 1},
        circuit={
            "failure_ratio": 0.5,
            "window": 4,
            "min_calls": 4,
            "open_for": 0.4,
            "half_open_calls": 2,
        },
    )
    run = Run(cfg)
    host = f"127.0.0.1:{hostile.port}"

    def state() -> float:
        return run.value("crawler_circuit_state", host=host)

    async with run.fetcher:
        for _ in range(4):
            with pytest.raises(FetchError) as err:
                await run.fetch("")
            assert err.value.kind is ErrorKind.HTTP_5XX
        assert state() == 1
        with pytest.raises(FetchError) as err:
            await run.fetch("")
        assert err.value.kind is ErrorKind.CIRCUIT_OPEN
        assert hostile.hits["/down"] == 4  # failed fast: no request
        await asyncio.sleep(0.5)
        assert state() == 2  # half-open by the timer, before any call
        hostile.down = False
        await asyncio.gather(run.fetch(""), run.fetch(""))
        assert state() == 0
        await run.alive(hostile)
    for to in ("open", "half_open", "closed"):
        assert run.value("crawler_circuit_transitions_total", host=host, state=to) == 1
    changes = [
        (r.previous_state, r.state)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.message == "circuit breaker state changed"
    ]
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


async def test_failed_probe_reopens_the_circuit(tmp_path: Path, hostile: HostileSite) -> None:
    hostile.down = True
    cfg = make_config(
        tmp_path,
        [source("s", f"{hostile.base}/down")],
        retry={"attempts": 1},
        circuit={"window": 2, "min_calls": 2, "open_for": 0.2, "half_open_calls": 1},
    )
    run = Run(cfg)
    host = f"127.0.0.1:{hostile.port}"
    async with run.fetcher:
        for _ in range(2):
            with pytest.raises(FetchError):
                await run.fetch("")
        await asyncio.sleep(0.3)
        with pytest.raises(FetchError) as err:
            await run.fetch("")  # the probe, still failing
        assert err.value.kind is ErrorKind.HTTP_5XX
        assert run.value("crawler_circuit_state", host=host) == 1
    assert run.value("crawler_circuit_transitions_total", host=host, state="open") == 2
    assert hostile.hits["/down"] == 3
