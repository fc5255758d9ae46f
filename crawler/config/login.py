"""A source's `login` section: how the crawler logs in before its first page (declared once).

A form login (the default) GETs `url`, fills the login form found there and submits it; a JSON
login (`token` given) POSTs the credentials as JSON to `url` and sends the token it answers as
`Authorization: Bearer …`. The password comes from a file or an environment variable, read at
each login, never from the YAML. How the login runs: `crawler.fetch.login`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawler.config import convert as cv
from crawler.config.loader import REQUIRED, setting
from crawler.config.request import _unreadable, form_map, json_value
from crawler.config.selectors import check_selector

_FORM_ONLY = ("form", "fields", "logged_in", "username_field", "password_field")


def _max_logins(value: Any) -> int:
    n = cv.positive_int(value)
    if n > 10:
        raise ValueError("at most 10 (each login is a request the site may count against you)")
    return n


@dataclass(frozen=True, kw_only=True)
class LoginConfig:
    """How a source logs in: a form, or a JSON endpoint answering a token."""

    url: str = setting(
        REQUIRED,
        cv.http_url,
        "the page with the login form (fetched with GET), or with `token` the JSON endpoint "
        "(POSTed to)",
        missing="a login needs the `url` of its form or endpoint",
    )
    username: str = setting(
        REQUIRED, cv.string, "the user name sent", missing="a login needs a `username`"
    )
    password_file: Path | None = setting(
        None,
        cv.path,
        "file holding the password (a trailing newline is stripped), read at each login",
    )
    password_env: str | None = setting(
        None, cv.string, "environment variable holding the password, instead of `password_file`"
    )
    form: str | None = setting(
        None,
        cv.string,
        "CSS selector of the login form",
        shown="the page's one form with a password input",
    )
    fields: tuple[tuple[str, str], ...] = setting(
        (),
        form_map,
        "form values that override the form's own (`{remember: \"1\"}`); the form's other "
        "inputs, hidden ones (CSRF tokens) included, are sent as the page has them",
    )
    username_field: str | None = setting(
        None, cv.string, "the form's user name input", shown="its text or email input"
    )
    password_field: str | None = setting(
        None, cv.string, "the form's password input", shown="its password input"
    )
    logged_in: str | None = setting(
        None,
        cv.string,
        "CSS selector present only when logged in (`#logout-form`); checked on the login's answer",
        shown="the answer has no password input and is not the login URL again",
    )
    token: str | None = setting(
        None,
        cv.string,
        "JMESPath of the token in the JSON answer (`access_token`): makes this a JSON login; "
        "the token is sent as `Authorization: Bearer …` only to the origin (scheme, host, "
        "port) of `url`",
    )
    json: str | None = setting(
        None, json_value, "extra members of the JSON login body (a mapping)", shown="none"
    )
    username_key: str = setting("username", cv.string, "the JSON body's user name member")
    password_key: str = setting("password", cv.string, "the JSON body's password member")
    max_per_run: int = setting(
        2,
        _max_logins,
        "logins per run at most: the first (when no stored session is valid) and a re-login "
        "when a page says the session expired",
    )

    @property
    def is_json(self) -> bool:
        return self.token is not None

    def check(self) -> Iterable[tuple[str, str]]:
        given = [k for k in ("password_file", "password_env") if getattr(self, k) is not None]
        if not given:
            yield "password_file", "a login needs `password_file` or `password_env`"
        elif len(given) > 1:
            yield "password_env", "use password_file or password_env, not both"
        for key in given:
            if (problem := _unreadable(getattr(self, key))) is not None:
                yield key, problem
        if self.is_json:
            for key in _FORM_ONLY:
                if getattr(self, key):
                    yield key, "a JSON login (`token`) has no form: remove it"
            if self.token and (error := check_selector("json", self.token)):
                yield "token", error
            if self.json is not None and not self.json.startswith("{"):
                yield "json", "must be a mapping (the members added to the login's JSON body)"
        else:
            if self.json is not None:
                yield "json", "`json` is for a JSON login: give `token` (the answer's token)"
            for key in ("form", "logged_in"):
                value = getattr(self, key)
                if value is not None and (error := check_selector("html", value)):
                    yield key, error
