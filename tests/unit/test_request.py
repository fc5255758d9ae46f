"""Request options: bodies, headers, secrets read each run, redaction, request identity."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from crawler.config.request import (
    AuthConfig,
    RequestConfig,
    form_map,
    header_map,
    json_value,
    method,
    proxy_url,
    read_headers_file,
)
from crawler.errors import SecretUnavailable
from crawler.fetch.request import prepare


def test_plain_get_is_identified_by_its_url_alone() -> None:
    p = prepare(None)
    assert p.method == "GET" and p.data is None and p.key("http://h/a") == "http://h/a"


def test_json_body_sets_type_and_identity() -> None:
    p = prepare(RequestConfig(method="POST", json=json_value({"q": "pi", "page": 1})))
    assert p.data == b'{"page":1,"q":"pi"}'
    assert p.headers["Content-Type"] == "application/json"
    other = prepare(RequestConfig(method="POST", json=json_value({"q": "pi", "page": 2})))
    assert p.key("http://h/s") != other.key("http://h/s") != "http://h/s"
    assert p.key("http://h/s").startswith("http://h/s POST ")


def test_form_and_raw_body() -> None:
    p = prepare(RequestConfig(method="POST", form=form_map({"a": "1 2", "b": None})))
    assert p.data == b"a=1+2&b=" and p.headers["Content-Type"].startswith("application/x-www")
    raw = prepare(
        RequestConfig(
            method="PUT", body="raw text", headers=header_map({"Content-Type": "text/plain"})
        )
    )
    assert raw.data == b"raw text" and raw.headers["Content-Type"] == "text/plain"


def test_user_agent_override() -> None:
    assert prepare(None, "mybot/2").headers == {"User-Agent": "mybot/2"}
    assert prepare(RequestConfig(), "mybot/2").headers == {"User-Agent": "mybot/2"}


def test_headers_file_is_read_at_every_prepare(tmp_path: Path) -> None:
    f = tmp_path / "h"
    f.write_text("# rotated hourly\nCookie: session=one\n\nX-Token:  abc  \n")
    req = RequestConfig(headers_file=f, headers=header_map({"Accept-Language": "en"}))
    first = prepare(req)
    assert first.secret_headers == {"Cookie": "session=one", "X-Token": "abc"}
    assert first.headers == {"Accept-Language": "en"}
    f.write_text("Cookie: session=two\n")
    assert prepare(req).secret_headers == {"Cookie": "session=two"}
    assert "session=one" in first.secrets


def test_bearer_and_basic_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_TOKEN", "tok-123")
    p = prepare(RequestConfig(auth=AuthConfig(bearer_env="T_TOKEN")))
    assert p.secret_headers == {"Authorization": "Bearer tok-123"}
    assert set(p.secrets) >= {"Bearer tok-123", "tok-123"}
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    b = prepare(RequestConfig(auth=AuthConfig(basic_user="u", password_file=pw)))
    assert b.secret_headers["Authorization"] == "Basic " + base64.b64encode(b"u:s3cret").decode()


def test_a_missing_secret_fails_the_run_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    with pytest.raises(SecretUnavailable, match="NOPE_TOKEN is not set"):
        prepare(RequestConfig(auth=AuthConfig(bearer_env="NOPE_TOKEN")))
    bad = tmp_path / "h"
    bad.write_text("Cookie: fine\nthis line holds the secret hunter2\n")
    with pytest.raises(SecretUnavailable) as info:
        read_headers_file(bad)
    assert str(info.value).endswith(":2: not a `Name: value` line")
    assert "hunter2" not in str(info.value)
    with pytest.raises(SecretUnavailable, match="cannot read"):
        read_headers_file(tmp_path / "gone")


def test_redact_and_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_TOKEN", "tok-123")
    monkeypatch.setenv("HTTPS_PROXY", "http://u:proxypw@proxy:3128")
    p = prepare(
        RequestConfig(auth=AuthConfig(bearer_env="T_TOKEN"), proxy="http://v:cfgpw@proxy:3128")
    )
    assert p.redact("echo: Bearer tok-123 / tok-123 via cfgpw and proxypw") == (
        "echo: [redacted] / [redacted] via [redacted] and [redacted]"
    )
    assert "Authorization" in p.headers_for("https://api.example/x?y", "https://api.example")
    assert "Authorization" not in p.headers_for("https://evil.example/x", "https://api.example")


@pytest.mark.parametrize(
    ("conv", "value", "fragment"),
    [
        (header_map, {"Bad Name": "x"}, "not a header name"),
        (header_map, {"X-A": "one\r\nX-Injected: 1"}, "one line"),
        (header_map, {"X-A": ["list"]}, "must be text"),
        (header_map, ["X-A: 1"], "mapping"),
        (form_map, "a=1", "mapping"),
        (method, "FETCH", "must be one of"),
        (proxy_url, "socks5://p:1080", "http://"),
        (json_value, {"a": {1, 2}}, "not JSON"),
    ],
)
def test_converters_refuse(conv, value, fragment) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=fragment):
        conv(value)


@pytest.mark.parametrize(
    ("config", "key", "fragment"),
    [
        (RequestConfig(method="POST", json="{}", body="x"), "body", "one of json, form or body"),
        (RequestConfig(json="{}"), "json", "needs a method such as POST"),
        (RequestConfig(headers_file=Path("/nonexistent/h")), "headers_file", "cannot read"),
        (AuthConfig(bearer_env="A", bearer_file=Path("/x")), "bearer_file", "not both"),
        (AuthConfig(), "bearer_env", "give bearer_env"),
        (AuthConfig(basic_user="u"), "password_env", "needs password_env"),
        (AuthConfig(bearer_env="A", basic_user="u"), "basic_user", "not both"),
        (AuthConfig(bearer_env="SURELY_UNSET_VAR_X"), "bearer_env", "is not set"),
        (
            AuthConfig(basic_user="u", password_file=Path("/nonexistent/pw")),
            "password_file",
            "cannot read",
        ),
    ],
)
def test_checks(config, key: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    problems = list(config.check())
    assert any(k == key and fragment in m for k, m in problems), problems


def test_headers_file_that_does_not_parse_is_a_check_problem(tmp_path: Path) -> None:
    f = tmp_path / "h"
    f.write_text("no colon here secretvalue\n")
    problems = list(RequestConfig(headers_file=f).check())
    assert problems == [("headers_file", f"{f}:1: not a `Name: value` line")]


def test_fetch_proxy_password_is_a_secret_even_without_request_options() -> None:
    p = prepare(None, None, "http://u:fetchpw@proxy:3128")
    assert p.method == "GET" and p.data is None
    assert (
        p.redact("connect to proxy with fetchpw failed")
        == "connect to proxy with [redacted] failed"
    )
