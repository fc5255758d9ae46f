"""Cookies within a run, a declarative login, sessions kept across runs and renewed: the edge
cases, on a hand-written site (tests/login_site.py) and its JSON token API, crawled in-process
by the real service (fetcher, pipeline, embedded store)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver
from prometheus_client import CollectorRegistry, generate_latest

from crawler.config.root import load_config
from crawler.run.result import RunResult
from crawler.service import Service
from tests.login_site import USER, LoginSite
from tests.site import StaticResolver

PASSWORD = "Pw-Sentinel-7c1d"


@pytest.fixture
def members() -> Iterator[LoginSite]:
    s = LoginSite(PASSWORD).start()
    yield s
    s.stop()


def once(
    cfg: Path, resolver: AbstractResolver | None = None
) -> tuple[RunResult, CollectorRegistry]:
    registry = CollectorRegistry()
    [result] = asyncio.run(Service(load_config(cfg), registry, resolver=resolver).once())
    return result, registry


def logins(registry: CollectorRegistry, result: str, source: str = "s") -> float | None:
    return registry.get_sample_value(
        "crawler_source_logins_total", {"source": source, "result": result}
    )


def stored(tmp_path: Path, source: str = "s") -> int:
    with sqlite3.connect(tmp_path / "var" / "crawler.sqlite") as db:
        return int(
            db.execute("select count(*) from scraped_data where source = ?", (source,)).fetchone()[
                0
            ]
        )


def member_source(site: LoginSite, pages: int, **login: Any) -> dict[str, Any]:
    return {
        "name": "s",
        "every": "1h",
        "urls": [f"{site.base}/members/{{0..{pages - 1}}}"],
        "items": "div.quote",
        "fields": {"id": "xpath:./@data-id", "text": "span.text::text"},
        "key": ["id"],
        "login": {"url": f"{site.base}/login", "username": USER, **login},
    }


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "members_password"
    path.write_text(PASSWORD + "\n")  # the trailing newline is stripped
    return path


def test_session_expiring_mid_run_logs_in_once_more_and_repeats_the_page(
    tmp_path: Path, members: LoginSite, password_file: Path, write_config: Callable[..., Path]
) -> None:
    members.expire_after = 2  # the session ends once two member pages were served
    cfg = write_config(
        sources=[
            member_source(members, 6, password_file=str(password_file), fields={"remember": "yes"})
        ]
    )
    result, registry = once(cfg)
    assert result.ok, result.error
    assert result.pages == 6 and result.failed_pages == 0
    assert stored(tmp_path) == 6 * 20  # every record once, the repeated pages' too
    assert logins(registry, "ok") == 2 and logins(registry, "failed") == 0
    assert len(members.form_logins) == 2
    # The form's hidden CSRF input and `next` kept, the checkbox set by `fields`.
    assert members.form_logins[0]["remember"] == "yes"
    assert members.form_logins[0]["who"] == USER and members.form_logins[0]["csrf"]
    # The stored session is 0600 and holds no password.
    sessions = tmp_path / "var" / "sessions"
    for path in sessions.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert PASSWORD not in path.read_text()
    assert {p.name for p in sessions.iterdir()} == {"s.json", "s.cookies"}


def test_logins_per_run_are_bounded_by_max_per_run(
    tmp_path: Path, members: LoginSite, password_file: Path, write_config: Callable[..., Path]
) -> None:
    members.expire_always = True  # a site that forgets every session at once
    # The login lands on /home (its `next` field overridden), outside the members' pages.
    source = member_source(
        members, 4, password_file=str(password_file), max_per_run=2, fields={"next": "/home"}
    )
    cfg = write_config(fetch={"concurrency": 1}, sources=[source])
    result, registry = once(cfg)
    # The first login and one renewal serve two pages; the other two fail as `login`, with
    # no third login: the site is not hammered.
    assert logins(registry, "ok") == 2 and len(members.form_logins) == 2
    assert result.pages == 2 and result.failed_pages == 2
    assert result.errors == {"login": 2}
    assert stored(tmp_path) == 2 * 20


def test_one_login_serves_three_runs(
    tmp_path: Path, members: LoginSite, password_file: Path, write_config: Callable[..., Path]
) -> None:
    cfg = write_config(sources=[member_source(members, 2, password_file=str(password_file))])
    counts, stamps = [], []
    for _ in range(3):
        result, registry = once(cfg)
        assert result.ok, result.error
        counts.append(logins(registry, "ok"))
        age = registry.get_sample_value("crawler_source_session_age_seconds", {"source": "s"})
        assert age is not None and age >= 0
        stamps.append((tmp_path / "var" / "sessions" / "s.cookies").stat().st_mtime_ns)
    assert counts == [1, 0, 0]
    # The member pages set no cookie: the runs after the login write nothing (an SD card).
    assert stamps[0] == stamps[1] == stamps[2]
    assert len(members.form_logins) == 1


def test_a_wrong_password_fails_the_run_once_and_is_never_shown(
    tmp_path: Path,
    members: LoginSite,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "Wrong-Sentinel-42ab"
    monkeypatch.setenv("MEMBERS_PASSWORD", wrong)
    cfg = write_config(
        log_level="DEBUG", sources=[member_source(members, 3, password_env="MEMBERS_PASSWORD")]
    )
    caplog.set_level(logging.DEBUG)
    result, registry = once(cfg)
    assert not result.ok
    assert result.error_kind == "login"
    assert "still has a password input" in (result.error or "")
    assert logins(registry, "failed") == 1 and logins(registry, "ok") == 0
    assert len(members.form_logins) == 1  # one try, no retry storm
    assert members.hits["/members/0"] == 0  # no page was fetched without a session
    errors = [
        r for r in caplog.records if r.levelno >= logging.ERROR and r.getMessage() == "login failed"
    ]
    assert len(errors) == 1
    assert errors[0].__dict__["url"] == f"{members.base}/login"
    everything = "\n".join(str(r.__dict__) for r in caplog.records)
    everything += generate_latest(registry).decode()
    with sqlite3.connect(tmp_path / "var" / "crawler.sqlite") as db:
        everything += str(db.execute("select * from crawler_jobs").fetchall())
    assert "login" in everything
    assert wrong not in everything and PASSWORD not in everything
    assert not (tmp_path / "var" / "sessions" / "s.json").exists()


def test_json_token_login_is_kept_and_renewed_on_401(
    tmp_path: Path,
    members: LoginSite,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_PASSWORD", PASSWORD)
    source = {
        "name": "api",
        "every": "1h",
        "parser": "json",
        "urls": [f"{members.base}/api/items/{{0..2}}"],
        "items": "items",
        "fields": {"id": "id", "text": "text"},
        "key": ["id"],
        "login": {
            "url": f"{members.base}/auth/login",
            "username": USER,
            "password_env": "API_PASSWORD",
            "token": "data.access_token",
            "username_key": "user",
            "password_key": "pass",
            "json": {"client": "pi-crawler"},
        },
    }
    cfg = write_config(sources=[source])
    result, registry = once(cfg)
    assert result.ok and result.records == 60, result.error
    assert members.api_logins == [{"user": USER, "client": "pi-crawler"}]
    result, registry = once(cfg)  # the stored token
    assert result.ok and logins(registry, "ok", "api") == 0
    members.tokens.clear()  # the API forgot it: 401, one new login, the pages again
    result, registry = once(cfg)
    assert result.ok and result.failed_pages == 0, result.error
    assert logins(registry, "ok", "api") == 1 and len(members.api_logins) == 2
    assert stored(tmp_path, "api") == 60
    token_file = (tmp_path / "var" / "sessions" / "api.json").read_text()
    assert PASSWORD not in token_file


def test_cookies_kept_within_a_run_never_sent_to_another_host_nor_to_a_public_suffix(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    shop = LoginSite(PASSWORD, host="127.0.0.1").start()
    other = LoginSite(PASSWORD, host="127.0.0.2").start()
    try:
        a = f"http://shop.example.co.uk:{shop.site.port}"
        b = f"http://another.co.uk:{other.site.port}"
        resolver = StaticResolver({"shop.example.co.uk": "127.0.0.1", "another.co.uk": "127.0.0.2"})
        source = {
            "name": "s",
            "every": "1h",
            "urls": [f"{a}/cookie/set", f"{a}/cookie/show", f"{b}/cookie/set"],
            "items": "div.quote",
            "fields": {"id": "xpath:./@data-id"},
            "key": ["id"],
            "allow_private": True,
        }
        # One worker: the pages in their order (the cookie is set before it is asked for).
        cfg = write_config(fetch={"concurrency": 1}, sources=[source])
        result, _ = once(cfg, resolver)
        assert result.ok and result.failed_pages == 0, result.errors
        assert dict(shop.cookies_seen)["/cookie/show"] == "visit=v1"  # not `wide`: refused
        assert other.cookies_seen == [("/cookie/set", None)]
        # Turned off: nothing is kept, the second page is refused for want of its cookie.
        cfg = write_config(fetch={"concurrency": 1}, sources=[{**source, "cookies": False}])
        shop.cookies_seen.clear()
        result, _ = once(cfg, resolver)
        assert result.failed_pages == 1 and result.errors == {"http_4xx": 1}
        assert [c for _, c in shop.cookies_seen] == [None, None]
    finally:
        shop.stop()
        other.stop()


@pytest.fixture
def elsewhere() -> Iterator[LoginSite]:
    """A second site on another port: another origin, which must never see the password."""
    s = LoginSite(PASSWORD).start()
    yield s
    s.stop()


def test_a_form_posting_to_another_origin_is_refused_and_the_password_never_sent(
    members: LoginSite,
    elsewhere: LoginSite,
    write_config: Callable[..., Path],
    password_file: Path,
) -> None:
    members.form_action = f"{elsewhere.base}/login"
    cfg = write_config(sources=[member_source(members, 1, password_file=str(password_file))])
    result, registry = once(cfg)
    assert not result.ok and result.error_kind == "login"
    assert "is not the login page's origin" in (result.error or ""), result.error
    assert elsewhere.form_logins == [] and members.form_logins == []
    assert elsewhere.hits["/login"] == 0
    assert logins(registry, "failed") == 1


@pytest.mark.parametrize("status", [307, 308])
def test_a_login_post_redirected_to_another_origin_with_its_body_is_not_followed(
    status: int,
    members: LoginSite,
    elsewhere: LoginSite,
    write_config: Callable[..., Path],
    password_file: Path,
) -> None:
    members.login_redirect = (status, f"{elsewhere.base}/login")
    cfg = write_config(sources=[member_source(members, 1, password_file=str(password_file))])
    result, _ = once(cfg)
    assert not result.ok and result.error_kind == "login"
    assert "would re-send the request's body" in (result.error or ""), result.error
    assert len(members.form_logins) == 1  # the POST to the login page's own origin
    assert elsewhere.form_logins == [] and elsewhere.hits["/login"] == 0


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_login_post_redirected_elsewhere_becomes_a_get_without_the_body(
    status: int,
    members: LoginSite,
    elsewhere: LoginSite,
    write_config: Callable[..., Path],
    password_file: Path,
) -> None:
    members.login_redirect = (status, f"{elsewhere.base}/login")
    cfg = write_config(sources=[member_source(members, 1, password_file=str(password_file))])
    result, _ = once(cfg)
    assert not result.ok  # it lands on a login form: no session
    assert elsewhere.hits["/login"] == 1 and elsewhere.form_logins == []  # a GET, no body


def test_a_login_token_is_sent_only_to_the_login_urls_origin(
    members: LoginSite,
    elsewhere: LoginSite,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_PASSWORD", PASSWORD)
    source = {
        "name": "api",
        "every": "1h",
        "parser": "json",
        # The same host on another port: another origin, a page of the same source.
        "urls": [f"{members.base}/api/items/{{0..1}}", f"{elsewhere.base}/api/items/5"],
        "items": "items",
        "fields": {"id": "id", "text": "text"},
        "key": ["id"],
        "login": {
            "url": f"{members.base}/auth/login",
            "username": USER,
            "password_env": "API_PASSWORD",
            "token": "data.access_token",
            "username_key": "user",
            "password_key": "pass",
        },
    }
    cfg = write_config(fetch={"concurrency": 1}, sources=[source])
    result, _ = once(cfg)
    assert result.records == 40, result.errors  # the login origin's two pages
    assert [p for p, a in members.auth_seen if a] == ["/api/items/0", "/api/items/1"]
    assert elsewhere.auth_seen == [("/api/items/5", None)] * len(elsewhere.auth_seen)
    assert elsewhere.auth_seen  # it was asked, without the token


HOSTILE = "p@ss w&rd+ü"  # spaces, `&`, `+` and non-ASCII: spelled otherwise in URLs and forms


def spelled(secret: str) -> list[str]:
    """The ways a secret shows in a URL, a form body or a page, and pieces of them."""
    from html import escape
    from urllib.parse import quote, quote_plus

    forms = {secret, quote(secret), quote_plus(secret), quote(secret, safe=""), escape(secret)}
    forms |= {f.lower() for f in forms}
    return sorted(forms | {"p@ss", "p%40ss", "w&rd", "w%26rd", "w&amp;rd"})


def logged(caplog: pytest.LogCaptureFixture, tmp_path: Path, result: RunResult) -> str:
    """Everything the run logged (with the log's fields), its result and `crawler_jobs`."""
    text = "\n".join(str(r.__dict__) for r in caplog.records) + str(result)
    with sqlite3.connect(tmp_path / "var" / "crawler.sqlite") as db:
        text += str(db.execute("select * from crawler_jobs").fetchall())
    return text


def test_a_password_echoed_by_a_hostile_site_is_redacted_in_every_spelling(
    tmp_path: Path,
    members: LoginSite,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    members.echo = True  # the wrong password comes back form-encoded in the URL and the page
    monkeypatch.setenv("MEMBERS_PASSWORD", HOSTILE)
    cfg = write_config(
        log_level="DEBUG", sources=[member_source(members, 1, password_env="MEMBERS_PASSWORD")]
    )
    caplog.set_level(logging.DEBUG)
    result, _ = once(cfg)
    assert not result.ok and result.error_kind == "login"
    assert "still has a password input" in (result.error or "") and "[redacted]" in (
        result.error or ""
    ), result.error
    everything = logged(caplog, tmp_path, result)
    assert "login failed" in everything
    for spelling in spelled(HOSTILE):
        assert spelling not in everything, spelling


def test_a_logged_in_sources_fetch_errors_never_show_its_session_cookie(
    tmp_path: Path,
    members: LoginSite,
    write_config: Callable[..., Path],
    password_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = member_source(members, 1, password_file=str(password_file))
    source["urls"].append(f"{members.base}/leak")  # redirects to /private/?sid=<the cookie>
    fetch = {"concurrency": 1, "robots": True}
    cfg = write_config(log_level="DEBUG", fetch=fetch, sources=[source])
    caplog.set_level(logging.DEBUG)
    result, _ = once(cfg)
    assert result.records == 20 and result.errors == {"robots_denied": 1}, result.errors
    [sid] = members.sessions
    everything = logged(caplog, tmp_path, result)
    assert "redirected to" in everything and "/private/?sid=[redacted]" in everything
    assert sid not in everything
