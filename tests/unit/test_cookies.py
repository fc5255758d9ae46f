"""The run's cookie jar: RFC 6265 via aiohttp, public suffixes refused, IP hosts kept, and a
session saved 0600 and loaded back with its host-only cookies still host-only."""

from __future__ import annotations

import logging
import stat
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
import yarl

from crawler.fetch import cookies
from crawler.fetch.sessions import SessionStore


def set_cookie(*headers: str) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for h in headers:
        jar.load(h)
    return jar


async def test_a_public_suffix_domain_is_refused_and_the_registrable_one_kept() -> None:
    jar = cookies.new_jar()
    url = yarl.URL("https://shop.example.co.uk/login")
    refused = cookies.take(
        jar,
        set_cookie("wide=1; Domain=co.uk; Path=/", "site=2; Domain=example.co.uk; Path=/"),
        url,
    )
    assert refused == 1
    assert cookies.cookie_header(jar, "https://other.example.co.uk/") == "site=2"
    assert cookies.cookie_header(jar, "https://another-shop.co.uk/") is None
    # A private suffix of the list too: one github.io site cannot set cookies for all.
    assert (
        cookies.take(jar, set_cookie("x=1; Domain=github.io"), yarl.URL("https://a.github.io/"))
        == 1
    )


async def test_a_public_suffix_that_is_the_host_itself_becomes_host_only() -> None:
    jar = cookies.new_jar()
    assert (
        cookies.take(jar, set_cookie("a=1; Domain=localhost"), yarl.URL("http://localhost/")) == 0
    )
    assert cookies.cookie_header(jar, "http://localhost/x") == "a=1"


async def test_ip_hosts_keep_cookies_and_never_send_them_to_another_address() -> None:
    jar = cookies.new_jar()
    cookies.take(jar, set_cookie("sid=abc; Path=/"), yarl.URL("http://127.0.0.1:8080/login"))
    assert cookies.cookie_header(jar, "http://127.0.0.1:8080/members/1") == "sid=abc"
    assert cookies.cookie_header(jar, "http://127.0.0.2:8080/members/1") is None
    # An IP host naming another address as the domain: refused.
    assert (
        cookies.take(jar, set_cookie("b=1; Domain=127.0.0.2"), yarl.URL("http://127.0.0.1/")) == 1
    )


async def test_path_secure_and_expiry_rules_are_the_jars() -> None:
    jar = cookies.new_jar()
    url = yarl.URL("https://example.org/shop/login")
    cookies.take(
        jar,
        set_cookie("p=1; Path=/shop", "s=2; Path=/; Secure", "gone=3; Path=/; Max-Age=0"),
        url,
    )
    assert cookies.cookie_header(jar, "https://example.org/shop/item") == "s=2; p=1" or (
        cookies.cookie_header(jar, "https://example.org/shop/item") == "p=1; s=2"
    )
    assert cookies.cookie_header(jar, "https://example.org/blog") == "s=2"
    assert cookies.cookie_header(jar, "http://example.org/blog") is None  # Secure: https only
    assert cookies.names(jar) == ["p", "s"]


async def test_a_saved_session_is_0600_and_loads_back_host_only(tmp_path: Path) -> None:
    jar = cookies.new_jar()
    cookies.take(jar, set_cookie("sid=abc123; Path=/"), yarl.URL("https://example.org/"))
    store = SessionStore(tmp_path / "sessions")
    store.save("shop", "id1", 1000.0, None, jar)
    for path in (tmp_path / "sessions").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "sessions").stat().st_mode) == 0o700
    again = cookies.new_jar()
    meta = store.load("shop", "id1", again)
    assert meta is not None and meta["logged_in_at"] == 1000.0
    assert cookies.cookie_header(again, "https://example.org/x") == "sid=abc123"
    assert cookies.cookie_header(again, "https://sub.example.org/x") is None  # still host-only
    # Another login (URL or user changed): not this session.
    assert store.load("shop", "id2", cookies.new_jar()) is None
    # A damaged file is deleted, not fatal.
    (tmp_path / "sessions" / "shop.json").write_text("{not json")
    assert store.load("shop", "id1", cookies.new_jar()) is None
    assert not (tmp_path / "sessions" / "shop.json").exists()


def _stored(tmp_path: Path) -> SessionStore:
    jar = cookies.new_jar()
    cookies.take(jar, set_cookie("sid=s3cr3t-value; Path=/"), yarl.URL("https://example.org/"))
    store = SessionStore(tmp_path / "sessions")
    store.save("shop", "id1", 1000.0, "tok-s3cr3t", jar)
    return store


# Each damaged file: (which file, its bytes). The pickle is one aiohttp would unpickle if it
# were handed a file that is not JSON (its legacy format); ours never is.
_DAMAGED = {
    "truncated cookies": ("shop.cookies", b'{"example.org|/": {"sid": {"key": "sid", "val'),
    "cookies not json": ("shop.cookies", b"\x80\x04\x95garbage"),
    "cookies a list": ("shop.cookies", b"[1, 2, 3]"),
    "cookie not a mapping": ("shop.cookies", b'{"example.org|/": {"sid": 5}}'),
    "cookie hostile value": ("shop.cookies", b'{"example.org|/": {"sid": {"key": {"a": 1}}}}'),
    "cookies a pickle": ("shop.cookies", b"cos\nsystem\n(S'echo pwned'\ntR."),
    "meta truncated": ("shop.json", b'{"format": 1, "login": "id1", "logged_'),
    "meta not utf-8": ("shop.json", b"\xff\xfe\x00"),
    "meta time a string": (
        "shop.json",
        b'{"format": 1, "login": "id1", "logged_in_at": "soon", "token": null}',
    ),
    "meta time infinite": (
        "shop.json",
        b'{"format": 1, "login": "id1", "logged_in_at": 1e999, "token": null}',
    ),
    "meta token a mapping": (
        "shop.json",
        b'{"format": 1, "login": "id1", "logged_in_at": 1.0, "token": {"a": 1}}',
    ),
    "meta token two lines": (
        "shop.json",
        b'{"format": 1, "login": "id1", "logged_in_at": 1.0, "token": "a\\r\\nX-Evil: 1"}',
    ),
}


@pytest.mark.parametrize("case", sorted(_DAMAGED))
async def test_a_damaged_stored_session_costs_one_warning_and_an_empty_jar(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = _stored(tmp_path)
    name, data = _DAMAGED[case]
    (tmp_path / "sessions" / name).write_bytes(data)
    jar = cookies.new_jar()
    cookies.take(jar, set_cookie("old=stale-value"), yarl.URL("https://example.org/"))
    caplog.set_level(logging.DEBUG)
    assert store.load("shop", "id1", jar) is None
    assert len(jar) == 0  # a fresh empty jar, nothing half-loaded
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["stored session unreadable: deleted"]
    assert warnings[0].__dict__["path"] == str(tmp_path / "sessions" / name)
    assert list((tmp_path / "sessions").iterdir()) == []  # both files removed
    everything = "\n".join(str(r.__dict__) for r in caplog.records)
    assert "s3cr3t" not in everything and "pwned" not in everything
    # The next login stores a session again, and it loads.
    store.save("shop", "id1", 2000.0, None, cookies.new_jar())
    assert store.load("shop", "id1", cookies.new_jar()) is not None
