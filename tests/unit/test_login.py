"""The login form filled in as a browser would (hidden inputs kept, user and password inputs
found, `fields` overriding), the checks of a `login` section, and expiry detection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crawler.config.login import LoginConfig
from crawler.errors import LoginFailed
from crawler.fetch.login import has_password_input, login_form, origin_of, same_page
from crawler.fetch.request import redact
from crawler.fetch.transport import Page

PAGE = b"""<html><body>
<form id="search" action="/search"><input type="text" name="q"></form>
<form id="login-form" method="post" action="/admin/login/?next=/admin/">
  <input type="hidden" name="csrfmiddlewaretoken" value="tok123">
  <input type="email" name="mail" value="">
  <input type="password" name="pw">
  <input type="checkbox" name="remember" value="1">
  <input type="checkbox" name="terms" value="ok" checked>
  <select name="lang"><option value="en">English</option><option value="fr" selected>French</option></select>
  <textarea name="note">hello</textarea>
  <input type="text" name="off" value="x" disabled>
  <input type="submit" name="go" value="Log in">
</form></body></html>"""


def login(**kw: Any) -> LoginConfig:
    return LoginConfig(**{"url": "http://s.test/admin/login/", "username": "crawler", **kw})


def answer(body: bytes = PAGE) -> Page:
    return Page("http://s.test/admin/login/", 200, body, "text/html", "utf-8", 0.0)


def test_the_form_with_a_password_input_is_filled_in_as_a_browser_would() -> None:
    method, action, fields = login_form(login(), "pw!", answer())
    assert method == "POST"
    assert action == "http://s.test/admin/login/?next=/admin/"
    assert fields == [
        ("csrfmiddlewaretoken", "tok123"),
        ("mail", "crawler"),
        ("pw", "pw!"),
        ("terms", "ok"),
        ("lang", "fr"),
        ("note", "hello"),
    ]


def test_fields_override_the_forms_values_and_add_missing_ones() -> None:
    _, _, fields = login_form(
        login(fields=(("remember", "1"), ("terms", "no"), ("extra", "e"))), "pw", answer()
    )
    assert ("terms", "no") in fields and ("remember", "1") in fields and ("extra", "e") in fields
    assert ("csrfmiddlewaretoken", "tok123") in fields


def test_named_fields_and_a_form_selector_win() -> None:
    _, _, fields = login_form(
        login(form="#login-form", username_field="note", password_field="mail"), "pw", answer()
    )
    assert ("note", "crawler") in fields and ("mail", "pw") in fields


@pytest.mark.parametrize(
    ("body", "kw", "why"),
    [
        (b"<form><input name=q></form>", {}, "no form with a password input"),
        (
            b"<form><input type=password></form><form><input type=PASSWORD></form>",
            {},
            "2 forms with a password input",
        ),
        (PAGE, {"form": "#nope"}, "no form matches `form` (#nope)"),
        (b"<form><input type=password name=p></form>", {}, "no text or email input"),
    ],
)
def test_a_form_that_cannot_be_filled_is_a_login_failure(
    body: bytes, kw: dict[str, Any], why: str
) -> None:
    with pytest.raises(LoginFailed, match=r"login at http://s\.test/admin/login/ failed") as exc:
        login_form(login(**kw), "pw", answer(body))
    assert why in str(exc.value)


def test_expiry_signs() -> None:
    assert has_password_input(b"<INPUT class=x TYPE='Password' name=p>")
    assert not has_password_input(b"<input type=text name=password>")
    assert same_page("http://s.test/admin/login/?next=/x", "http://s.test/admin/login")
    assert not same_page("http://s.test/admin/", "http://s.test/admin/login/")


def test_login_section_problems(tmp_path: Path) -> None:
    def problems(**kw: Any) -> list[tuple[str, str]]:
        return list(login(**kw).check())

    assert problems() == [("password_file", "a login needs `password_file` or `password_env`")]
    assert problems(password_env="NOPE_NOT_SET_X") == [
        ("password_env", "environment variable NOPE_NOT_SET_X is not set")
    ]
    secret = tmp_path / "pw"
    secret.write_text("s\n")
    assert problems(password_file=secret) == []
    assert problems(password_file=tmp_path / "missing")[0][0] == "password_file"
    assert ("form", "a JSON login (`token`) has no form: remove it") in problems(
        password_file=secret, token="access_token", form="#f"
    )
    assert problems(password_file=secret, token="a[")[0][0] == "token"
    assert problems(password_file=secret, token="t", json="[1]")[0][0] == "json"
    assert problems(password_file=secret, json='{"a":1}')[0][0] == "json"


def test_a_form_login_without_cookies_is_refused_where_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crawler.config.root import load_config
    from crawler.errors import ConfigError

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources:\n"
        "  - name: s\n"
        "    every: 1h\n"
        "    url: http://s.test/a\n"
        "    fields: {t: h1::text}\n"
        "    cookies: false\n"
        "    login: {url: http://s.test/login, username: u, password_env: NOPE_UNSET_PW}\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)  # `crawler check`: the password variable must exist
    assert (
        f"{cfg}:7: sources.s.login.password_env: environment variable NOPE_UNSET_PW is not set"
        in str(exc.value)
    )
    monkeypatch.setenv("NOPE_UNSET_PW", "x")
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    assert "sources.s.cookies: a form login keeps its session in cookies" in str(exc.value)


@pytest.mark.parametrize(
    ("page_url", "action"),
    [
        ("https://s.test/login", "http://s.test/login"),  # a downgrade to plain http
        ("http://s.test/login", "http://evil.test/login"),  # another host
        ("http://s.test/login", "http://s.test:8080/login"),  # another port
        ("http://s.test/login", "//evil.test/login"),  # scheme-relative, another host
        ("http://s.test/login", "http://s.test@evil.test/login"),  # user info hiding the host
    ],
)
def test_a_form_action_on_another_origin_is_refused(page_url: str, action: str) -> None:
    body = (
        f'<form method="post" action="{action}"><input name="u">'
        '<input type="password" name="p"></form>'
    ).encode()
    page = Page(page_url, 200, body, "text/html", "utf-8", 0.0)
    with pytest.raises(LoginFailed, match="is not the login page's origin") as caught:
        login_form(login(url=page_url), "pw-Sentinel", page)
    assert "pw-Sentinel" not in str(caught.value)


def test_a_form_action_on_the_same_origin_is_kept_default_port_spelled_or_not() -> None:
    body = b'<form method="post" action="https://S.test:443/in"><input name="u"><input type="password" name="p"></form>'
    page = Page("https://s.test/login", 200, body, "text/html", "utf-8", 0.0)
    assert login_form(login(url="https://s.test/login"), "pw", page)[1] == "https://S.test:443/in"


def test_an_origin_is_scheme_host_and_port() -> None:
    assert origin_of("https://API.test/x") == origin_of("https://api.test:443/y?z")
    assert origin_of("https://api.test/x") != origin_of("http://api.test/x")  # no downgrade
    assert origin_of("http://api.test/x") != origin_of("http://api.test:8080/x")
    assert origin_of("http://a.test/x") != origin_of("http://b.a.test/x")


def test_a_secret_is_redacted_in_the_spellings_of_urls_forms_and_pages() -> None:

    pw = "p@ss w&rd+ü"
    for text in (
        pw,
        "p%40ss%20w%26rd%2B%C3%BC",  # quote(safe="")
        "p%40ss+w%26rd%2b%c3%bc",  # a form body, lower-case escapes
        "p@ss+w%26rd%2B%C3%BC",  # as yarl keeps a redirect's query
        "p@ss w%26rd%2Bü",  # yarl's human_repr
        "p@ss w&amp;rd+ü",  # an HTML page
    ):
        assert redact(f"at /x?e={text}&n=1 end", [pw]) == "at /x?e=[redacted]&n=1 end", text
    assert redact("p@ss w&rd+u", [pw]) == "p@ss w&rd+u"  # another text is kept
    assert redact("a.b*c", ["a.b"]) == "[redacted]*c"  # a secret is text, not a pattern
