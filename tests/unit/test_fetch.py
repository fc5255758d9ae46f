"""Unit tests of the fetch layer's parts: breaker, pacer, robots cache, HTTP state, parsing."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from crawler.config.fetch import CircuitConfig
from crawler.errors import ErrorKind, FetchError
from crawler.fetch import robots as robots_mod
from crawler.fetch.breaker import CircuitBreaker, State
from crawler.fetch.content import check_content_type, choose_charset
from crawler.fetch.httpstate import HttpState, Validators, revalidate
from crawler.fetch.politeness import HostPacer
from crawler.fetch.robots import RobotsCache
from crawler.fetch.transport import map_aiohttp_errors, retry_after
from crawler.observability.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    v = registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


# --------------------------------------------------------------------------- circuit breaker


def make_breaker(**kw: float) -> tuple[CircuitBreaker, Clock, CollectorRegistry]:
    registry = CollectorRegistry()
    clock = Clock()
    cfg = CircuitConfig(
        **{
            "failure_ratio": 0.5,
            "window": 10,
            "min_calls": 4,
            "open_for": 10.0,
            "half_open_calls": 3,
            **kw,
        }  # type: ignore[arg-type]
    )
    return CircuitBreaker("h:1", cfg, Metrics(registry), clock), clock, registry


def call(b: CircuitBreaker, failed: bool) -> None:
    b.record(b.acquire(), failed)


def test_breaker_stays_closed_below_min_calls_and_below_ratio() -> None:
    b, _, _ = make_breaker()
    for _ in range(3):
        call(b, True)  # 3 failures of 3 calls, but min_calls is 4
    assert b.state is State.CLOSED
    b2, _, _ = make_breaker()
    for failed in (True, False, False, False, True, False):  # 2 of 6 = 33 %
        call(b2, failed)
    assert b2.state is State.CLOSED


def test_breaker_opens_at_ratio_and_fails_fast(caplog: pytest.LogCaptureFixture) -> None:
    b, clock, reg = make_breaker()
    for failed in (False, True, False, True):  # 50 % of 4
        call(b, failed)
    assert b.state is State.OPEN
    assert sample(reg, "crawler_circuit_state", host="h:1") == 1
    assert sample(reg, "crawler_circuit_transitions_total", host="h:1", state="open") == 1
    with pytest.raises(FetchError) as err:
        b.acquire()
    assert err.value.kind is ErrorKind.CIRCUIT_OPEN
    clock.now += 9.9
    with pytest.raises(FetchError):
        b.check()
    (log,) = [r for r in caplog.records if r.name == "crawler.breaker"]
    assert (log.levelname, log.state, log.host, log.failures, log.calls) == (  # type: ignore[attr-defined]
        "WARNING",
        "open",
        "h:1",
        2,
        4,
    )


def test_breaker_window_slides() -> None:
    b, _, _ = make_breaker(window=4, min_calls=4, failure_ratio=0.75)
    for failed in (True, True, False, False, False, True, True):
        call(b, failed)
    assert b.state is State.CLOSED  # never 3 failures among the last 4 calls
    call(b, True)  # the last 4: F, T, T, T
    assert b.state is State.OPEN


def test_breaker_half_open_probes_then_closes() -> None:
    b, clock, reg = make_breaker()
    for _ in range(4):
        call(b, True)
    clock.now += 10
    b.check()
    assert b.state is State.HALF_OPEN
    assert sample(reg, "crawler_circuit_state", host="h:1") == 2
    permits = [b.acquire() for _ in range(3)]
    with pytest.raises(FetchError):  # a fourth caller while three probes are in flight
        b.acquire()
    b.record(permits[0], False)
    b.record(permits[1], True)
    assert b.state is State.HALF_OPEN
    b.record(permits[2], False)  # 1 failure of 3 < 50 %
    assert b.state is State.CLOSED
    assert sample(reg, "crawler_circuit_state", host="h:1") == 0
    # The window starts empty again: three failures do not reopen it.
    for _ in range(3):
        call(b, True)
    assert b.state is State.CLOSED


def test_breaker_half_open_reopens_on_failed_probes() -> None:
    b, clock, reg = make_breaker(half_open_calls=2)
    for _ in range(4):
        call(b, True)
    clock.now += 10
    call(b, True)
    call(b, False)  # 1 of 2 = 50 %: reopen
    assert b.state is State.OPEN
    assert sample(reg, "crawler_circuit_transitions_total", host="h:1", state="open") == 2


def test_breaker_release_returns_a_probe_permit() -> None:
    b, clock, _ = make_breaker(half_open_calls=1)
    for _ in range(4):
        call(b, True)
    clock.now += 10
    b.release(b.acquire())  # cancelled call: no outcome
    b.record(b.acquire(), False)  # the permit was available again
    assert b.state is State.CLOSED


def test_breaker_ignores_outcomes_of_calls_from_an_earlier_state() -> None:
    b, clock, _ = make_breaker(half_open_calls=1)
    slow = b.acquire()  # begun while closed
    for _ in range(4):
        call(b, True)
    clock.now += 10
    probe = b.acquire()
    b.record(slow, False)  # finishes during half-open: not the probe
    assert b.state is State.HALF_OPEN
    b.record(probe, False)
    assert b.state is State.CLOSED


# --------------------------------------------------------------------------- pacer


def test_pacer_spaces_requests_per_host() -> None:
    clock = Clock()
    p = HostPacer(clock)
    assert p.reserve("a", 1.0) == 0
    assert p.reserve("a", 1.0) == 1.0
    assert p.reserve("a", 2.0) == 2.0  # the delay applies after the slot booked
    assert p.reserve("b", 1.0) == 0  # hosts are independent
    clock.now += 10
    assert p.reserve("a", 1.0) == 0


async def test_pacer_wait_sleeps() -> None:
    p = HostPacer()
    started = time.monotonic()
    await asyncio.gather(*(p.wait("h", 0.05) for _ in range(3)))
    assert time.monotonic() - started >= 0.095


# --------------------------------------------------------------------------- parsing


def test_retry_after_parsing() -> None:
    assert retry_after("120") == 120
    assert retry_after(" 1.5 ") == 1.5
    assert retry_after("-3") == 0
    assert retry_after(None) is None
    assert retry_after("soon") is None
    now = time.time()
    when = datetime.fromtimestamp(now, timezone.utc) + timedelta(seconds=30)
    parsed = retry_after(format_datetime(when, usegmt=True), now=now)
    assert parsed is not None and 29 <= parsed <= 30
    past = format_datetime(datetime(2000, 1, 1, tzinfo=timezone.utc), usegmt=True)
    assert retry_after(past) == 0


def test_choose_charset() -> None:
    assert choose_charset("ISO-8859-1", b"", "html") == "iso8859-1"
    assert choose_charset("no-such-charset", b"<meta charset='koi8-r'>", "html") == "koi8-r"
    meta = b"<head><meta http-equiv='Content-Type' content='text/html; charset=windows-1252'>"
    assert choose_charset(None, meta, "html") == "cp1252"
    assert choose_charset(None, b"\xef\xbb\xbf<html>", "html") == "utf-8"
    assert choose_charset(None, b"<html>caf\xc3\xa9", "html") == "utf-8"
    assert choose_charset(None, b'{"a": "<meta charset=latin1>"}', "json") == "utf-8"
    late = b" " * 5000 + b"<meta charset='koi8-r'>"  # past the sniffed prefix
    assert choose_charset(None, late, "html") == "utf-8"


@pytest.mark.parametrize(
    ("parser", "ctype", "ok"),
    [
        ("html", "text/html", True),
        ("html", "application/xhtml+xml", True),
        ("html", "application/json", False),
        ("html", "image/png", False),
        ("json", "application/json", True),
        ("json", "application/ld+json", True),
        ("json", "text/plain", True),
        ("json", "text/html", False),
    ],
)
def test_content_type_against_parser(parser: str, ctype: str, ok: bool) -> None:
    if ok:
        check_content_type(parser, True, ctype)
    else:
        with pytest.raises(FetchError) as err:
            check_content_type(parser, True, ctype)
        assert err.value.kind is ErrorKind.BAD_CONTENT
    check_content_type(parser, False, "application/octet-stream")  # undeclared: allowed


# --------------------------------------------------------------------------- robots cache

UA = "pi-crawler/0.1 (+https://example.org)"


class FakeRobots:
    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes] | FetchError] = []
        self.calls = 0

    async def __call__(self, url: str) -> tuple[int, bytes]:
        self.calls += 1
        await asyncio.sleep(0.01)
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if isinstance(answer, FetchError):
            raise answer
        return answer


def make_cache(
    fake: FakeRobots, ttl: float = 100.0
) -> tuple[RobotsCache, Clock, CollectorRegistry]:
    reg = CollectorRegistry()
    clock = Clock()
    return RobotsCache(fake, UA, ttl, Metrics(reg), clock), clock, reg


async def test_robots_cache_shares_one_fetch_and_expires() -> None:
    fake = FakeRobots()
    fake.answers = [(200, b"User-agent: *\nDisallow: /a\nCrawl-delay: 4\n")]
    cache, clock, reg = make_cache(fake)
    policies = await asyncio.gather(*(cache.policy("http://h") for _ in range(5)))
    assert fake.calls == 1
    p = policies[0]
    assert not p.allows("http://h/a/1", UA) and p.allows("http://h/b", UA)
    assert p.crawl_delay(UA) == 4
    clock.now += 99
    await cache.policy("http://h")
    assert fake.calls == 1
    clock.now += 2
    await cache.policy("http://h")
    assert fake.calls == 2
    assert sample(reg, "crawler_robots_fetches_total", outcome="ok") == 2


async def test_robots_request_rate_becomes_a_delay() -> None:
    fake = FakeRobots()
    fake.answers = [(200, b"User-agent: *\nRequest-rate: 1/5\n")]
    cache, _, _ = make_cache(fake)
    assert (await cache.policy("http://h")).crawl_delay(UA) == 5


@pytest.mark.parametrize("status", [401, 403, 404, 410])
async def test_robots_4xx_allows_everything(status: int) -> None:
    fake = FakeRobots()
    fake.answers = [(status, b"")]
    cache, _, reg = make_cache(fake)
    p = await cache.policy("http://h")
    assert p.allows("http://h/anything", UA)
    assert sample(reg, "crawler_robots_fetches_total", outcome="missing") == 1


@pytest.mark.parametrize(
    "answer", [(500, b""), (429, b""), FetchError(ErrorKind.CONNECT, "refused")]
)
async def test_robots_unreachable_disallows_for_a_while(
    answer: tuple[int, bytes] | FetchError, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeRobots()
    fake.answers = [answer, (404, b"")]
    cache, clock, reg = make_cache(fake, ttl=3600)
    p = await cache.policy("http://h")
    assert not p.allows("http://h/", UA) and p.deny_all
    assert sample(reg, "crawler_robots_fetches_total", outcome="error") == 1
    (log,) = [r for r in caplog.records if r.name == "crawler.robots"]
    assert log.levelname == "WARNING" and log.fallback == "host disallowed"  # type: ignore[attr-defined]
    clock.now += robots_mod.ERROR_TTL - 1
    assert not (await cache.policy("http://h")).allows("http://h/", UA)
    clock.now += 2  # retried after ERROR_TTL, not after the full TTL
    assert (await cache.policy("http://h")).allows("http://h/", UA)
    assert fake.calls == 2


async def test_robots_unreachable_keeps_the_last_good_copy() -> None:
    fake = FakeRobots()
    fake.answers = [(200, b"User-agent: *\nDisallow: /a\n"), (503, b"")]
    cache, clock, _ = make_cache(fake)
    await cache.policy("http://h")
    clock.now += 101
    p = await cache.policy("http://h")
    assert fake.calls == 2
    assert p.allows("http://h/b", UA) and not p.allows("http://h/a", UA)


async def test_robots_huge_file_is_truncated() -> None:
    fake = FakeRobots()
    body = b"User-agent: *\nDisallow: /a\n" + b"# padding\n" * 100_000
    fake.answers = [(200, body + b"Disallow: /\n")]
    cache, _, _ = make_cache(fake)
    p = await cache.policy("http://h")
    assert p.allows("http://h/b", UA)  # the rule past MAX_BYTES is ignored


# --------------------------------------------------------------------------- HTTP state


async def test_http_state_writes_only_changes_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "http_state.sqlite"
    state = HttpState(path)
    await state.open()
    v1 = Validators('"a"', "Sat, 21 Nov 2026 10:00:00 GMT", b"h" * 16)
    for i in range(10):
        state.put("s", f"http://h/{i}", None, v1)
    state.put("s", "http://h/0", v1, v1)  # unchanged: no write
    assert await state.get("s", "http://h/3") == v1  # pending rows are visible at once
    await state.flush()
    assert (state.writes, state.commits) == (10, 1)
    old = await state.get("s", "http://h/0")
    state.put("s", "http://h/0", old, v1)
    await state.flush()
    assert state.writes == 10
    assert await state.get("other", "http://h/0") is None  # keyed by source too
    await state.close()

    again = HttpState(path)
    await again.open()
    assert await again.get("s", "http://h/9") == v1
    assert v1.headers() == {
        "If-None-Match": '"a"',
        "If-Modified-Since": "Sat, 21 Nov 2026 10:00:00 GMT",
    }
    again.put("s", "http://h/9", v1, None)  # forget
    await again.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM http_state").fetchone()[0] == 9
        assert conn.execute("PRAGMA synchronous").fetchone()[0] in (1, 2)


async def test_http_state_drops_rows_of_sources_no_longer_configured(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    state = HttpState(path)
    await state.open()
    for source in ("kept", "gone"):
        state.put(source, "u", None, Validators(etag="x"))
    await state.close()
    state = HttpState(path, frozenset({"kept", "other"}))
    await state.open()
    assert await state.get("kept", "u") == Validators(etag="x")
    assert await state.get("gone", "u") is None
    await state.close()


async def test_http_state_flushes_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crawler.fetch import httpstate

    monkeypatch.setattr(httpstate, "FLUSH_AFTER", 0.05)
    monkeypatch.setattr(httpstate, "FLUSH_ROWS", 3)
    state = HttpState(tmp_path / "s.sqlite")
    await state.open()
    state.put("s", "u1", None, Validators(etag="x"))
    await asyncio.sleep(0.2)
    assert state.commits == 1  # by time
    for i in range(3):
        state.put("s", f"v{i}", None, Validators(etag="x"))
    await asyncio.sleep(0.01)
    assert state.commits == 2  # by size, before the timer
    await state.close()


async def test_http_state_unusable_file_is_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "state.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    state = HttpState(bad)
    await state.open()
    assert not state.available
    state.put("s", "u", None, Validators(etag="x"))
    assert await state.get("s", "u") is None
    await state.close()
    assert any(r.levelno == logging.ERROR for r in caplog.records)


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (asyncio.TimeoutError(), ErrorKind.TIMEOUT),
        (aiohttp.ServerTimeoutError("read"), ErrorKind.TIMEOUT),
        (aiohttp.TooManyRedirects(None, ()), ErrorKind.REDIRECT),
        (aiohttp.ClientPayloadError("cut"), ErrorKind.CONNECT),
        (aiohttp.ServerDisconnectedError(), ErrorKind.CONNECT),
        (ConnectionResetError("reset"), ErrorKind.CONNECT),
        (aiohttp.InvalidURL("x"), ErrorKind.BAD_CONTENT),
        (aiohttp.ClientError("odd"), ErrorKind.CONNECT),
    ],
)
def test_map_aiohttp_errors_translates_at_the_edge(raised: Exception, kind: ErrorKind) -> None:
    with pytest.raises(FetchError) as err, map_aiohttp_errors():
        raise raised
    assert err.value.kind is kind and err.value.__cause__ is raised


def test_map_aiohttp_errors_lets_ours_bugs_and_cancellation_through() -> None:
    ours = FetchError(ErrorKind.HTTP_4XX, "HTTP 404", status=404)
    for exc in (ours, ValueError("a bug"), asyncio.CancelledError()):
        with pytest.raises(type(exc)) as err, map_aiohttp_errors():
            raise exc
        assert err.value is exc


def test_revalidate_hashes_bodies_and_keeps_the_hash_on_304() -> None:
    first = revalidate(None, 200, '"v1"', None, b"body")
    assert first is not None and first.old is None and not first.unchanged
    assert first.new.etag == '"v1"' and first.new.body_hash is not None
    same = revalidate(first.new, 200, '"v2"', None, b"body")  # new ETag, same bytes
    assert same is not None and same.unchanged and same.new.etag == '"v2"'
    changed = revalidate(first.new, 200, None, None, b"other")
    assert changed is not None and not changed.unchanged
    kept = revalidate(first.new, 304, None, "Mon, 01 Jan 2026 00:00:00 GMT", b"")
    assert kept is not None and not kept.unchanged
    assert kept.new == Validators('"v1"', "Mon, 01 Jan 2026 00:00:00 GMT", first.new.body_hash)
    assert revalidate(None, 304, None, None, b"") is None  # nothing known, nothing to record
