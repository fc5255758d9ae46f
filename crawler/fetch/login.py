"""Logging in: the form login and the JSON token login of a source's `login` section.

A form login GETs the login page, finds the form (`login.form`, else the page's one form with
a password input), keeps every value the form would send — hidden inputs such as CSRF tokens,
checked boxes, selected options — fills in the user name and password inputs (found from the
form: its text or email input and its password input, unless `username_field` and
`password_field` name them) and `login.fields`, and submits it to the form's action with its
method, as a browser would — only to the login page's own origin (scheme, host, port): a
form whose action points elsewhere, an https page's included that posts over plain http, is
refused and the password never sent (the fetch layer, for its part, follows no 307/308 that
would re-send the body to another origin). It succeeded when the answer shows
`login.logged_in`, or by default when it has no password input and is not the login URL again.

A JSON login POSTs `{username_key: …, password_key: …, **json}` and takes the token at the
JMESPath `login.token` of the answer.

Every request (a `Login`) goes through the fetch layer (`Send`: robots.txt, politeness, the
LAN guard, retries of transport failures, never of a 401/403), with the run's cookie jar. A
failure raises `LoginFailed` saying what was tried and which check failed; never the password.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urldefrag, urlencode, urljoin, urlsplit

from crawler.config.login import LoginConfig
from crawler.errors import FetchError, LoginFailed
from crawler.fetch.request import Prepared
from crawler.fetch.transport import Page

# A password input, found in the raw bytes before anything is parsed: most pages of a crawl
# have none, and this is checked on each of them (an expired session shows the login form).
_PASSWORD_INPUT = re.compile(rb"<input\b[^>]*\btype\s*=\s*[\"']?password\b", re.IGNORECASE)
_PASSWORD_XPATH = './/input[translate(@type, "PASSWORD", "password") = "password"]'
_SKIPPED_TYPES = frozenset({"submit", "image", "reset", "button", "file"})
_TEXT_TYPES = frozenset({"text", "email", ""})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Login:
    """One request of a login, as the fetch layer sends it."""

    method: str
    url: str
    parser: str  # "html" or "json": the content type the answer must have
    password: str  # blanked out of any error text
    data: bytes | None = None
    content_type: str | None = None

    def options(self, base: Prepared, secrets: tuple[str, ...]) -> Prepared:
        """The request: the source's headers (`base`) with this method and body; `secrets`
        (the session's) blanked out of error texts with the password."""
        headers = dict(base.headers)
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        hidden = sorted({self.password, *secrets} - {""}, key=len, reverse=True)
        return Prepared(
            method=self.method,
            headers=headers,
            secret_headers=base.secret_headers,
            data=self.data,
            proxy=base.proxy,
            secrets=(*hidden, *base.secrets),
            identity="login",
        )


Send = Callable[[Login], Awaitable[Page]]


def has_password_input(body: bytes) -> bool:
    """Whether an HTML body holds a password input (the login form, again)."""
    return _PASSWORD_INPUT.search(body) is not None


def origin_of(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the default port spelled out and no user info: what a
    login's secrets (the password, the token) are bound to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port out of range: an origin no other URL shares
        port = -1
    return scheme, (parts.hostname or "").rstrip("."), port


def same_page(a: str, b: str) -> bool:
    """Whether two URLs name the same page: scheme, host and path (the query may differ:
    `/admin/login/?next=/admin/`)."""
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.netloc.lower(), pa.path.rstrip("/") or "/") == (
        pb.scheme,
        pb.netloc.lower(),
        pb.path.rstrip("/") or "/",
    )


async def log_in(login: LoginConfig, password: str, send: Send) -> str | None:
    """Log in; return the token of a JSON login (None for a form login, whose session is in
    the run's cookie jar). Raise LoginFailed."""
    if login.is_json:
        return await _json_login(login, password, send)
    await _form_login(login, password, send)
    return None


async def _form_login(login: LoginConfig, password: str, send: Send) -> None:
    page = await _send(send, Login("GET", login.url, "html", password), "fetching the login form")
    if page.status >= 300:
        raise LoginFailed(login.url, f"the login page answered HTTP {page.status}", page.status)
    method, action, fields = login_form(login, password, page)
    if method != "POST":
        # The password would travel in the URL, and URLs are logged: not sent.
        raise LoginFailed(login.url, "the login form's method is GET, not POST", page.status)
    target, data = action, urlencode(fields).encode()
    ctype = "application/x-www-form-urlencoded"
    post = Login("POST", target, "html", password, data, ctype)
    answer = await _send(send, post, "submitting the login form")
    if answer.status >= 400:
        raise LoginFailed(target, f"the form's answer was HTTP {answer.status}", answer.status)
    landed = answer.final_url or target
    if login.logged_in is not None:
        if not _selects(answer, login.logged_in):
            raise LoginFailed(
                target,
                f"`logged_in` ({login.logged_in}) not found on the answer ({landed}): "
                "wrong user name or password?",
                answer.status,
            )
    elif has_password_input(answer.body):
        raise LoginFailed(
            target,
            f"the answer ({landed}) still has a password input: wrong user name or password?",
            answer.status,
        )
    elif same_page(landed, login.url):
        raise LoginFailed(target, f"the answer is the login page again ({landed})")


async def _json_login(login: LoginConfig, password: str, send: Send) -> str:
    body: dict[str, Any] = json.loads(login.json) if login.json else {}  # a mapping: checked
    body[login.username_key] = login.username
    body[login.password_key] = password
    data = json.dumps(body).encode()
    post = Login("POST", login.url, "json", password, data, "application/json")
    answer = await _send(send, post, "POST")
    if answer.status >= 400:
        raise LoginFailed(login.url, f"HTTP {answer.status}", answer.status)
    try:
        doc = json.loads(answer.body.decode(answer.charset or "utf-8"))
    except (UnicodeDecodeError, ValueError, LookupError) as exc:
        raise LoginFailed(login.url, f"the answer is not JSON ({exc.__class__.__name__})") from None
    import jmespath

    token = jmespath.search(login.token or "", doc)
    if not isinstance(token, str) or not token.strip():
        raise LoginFailed(login.url, f"no token at `{login.token}` in the answer", answer.status)
    return token.strip()


async def _send(send: Send, request: Login, what: str) -> Page:
    try:
        return await send(request)
    except FetchError as exc:
        # A 401/403 is a FetchError too: never retried, it says the credentials are refused.
        raise LoginFailed(request.url, f"{what}: {exc}", exc.status) from None


def _selects(answer: Page, selector: str) -> bool:
    from parsel import Selector

    text = answer.body.decode(answer.charset or "utf-8", "replace")
    return bool(Selector(text=text, type="html").css(selector))


def login_form(
    login: LoginConfig, password: str, page: Page
) -> tuple[str, str, list[tuple[str, str]]]:
    """The login form of `page` filled in: (method, action URL, fields in form order)."""
    from parsel import Selector

    doc = Selector(text=page.body.decode(page.charset or "utf-8", "replace"), type="html")
    if login.form is not None:
        forms = list(doc.css(login.form))
        if not forms:
            raise LoginFailed(login.url, f"no form matches `form` ({login.form})", page.status)
        form = forms[0]
    else:
        forms = [f for f in doc.css("form") if f.xpath(_PASSWORD_XPATH)]
        if len(forms) != 1:
            found = "no form" if not forms else f"{len(forms)} forms"
            raise LoginFailed(
                login.url,
                f"{found} with a password input on the page: set `login.form` to its selector",
                page.status,
            )
        form = forms[0]
    fields: list[tuple[str, str]] = []
    user_name, pass_name = login.username_field, login.password_field
    for el in form.xpath(".//input|.//select|.//textarea"):
        name = el.attrib.get("name")
        if not name or "disabled" in el.attrib:
            continue
        tag = el.root.tag.lower() if isinstance(el.root.tag, str) else ""
        if tag == "select":
            chosen = el.css("option[selected]") or el.css("option")
            fields.append((name, _option_value(chosen[0]) if chosen else ""))
            continue
        if tag == "textarea":
            fields.append((name, el.xpath("string()").get() or ""))
            continue
        kind = (el.attrib.get("type") or "").lower()
        if kind in _SKIPPED_TYPES:
            continue
        if kind in ("checkbox", "radio") and "checked" not in el.attrib:
            continue
        if kind == "password" and pass_name is None:
            pass_name = name
        elif kind in _TEXT_TYPES and user_name is None:
            user_name = name
        fields.append((name, el.attrib.get("value", "on" if kind == "checkbox" else "")))
    if pass_name is None:
        raise LoginFailed(login.url, "the form has no password input", page.status)
    if user_name is None:
        raise LoginFailed(
            login.url, "the form has no text or email input: set `username_field`", page.status
        )
    values = {user_name: login.username, pass_name: password, **dict(login.fields)}
    out = [(k, values.pop(k)) if k in values else (k, v) for k, v in fields]
    out.extend(values.items())  # named fields the form does not have: added
    method = (form.attrib.get("method") or "GET").upper()
    here = page.final_url or page.url
    action = urldefrag(urljoin(here, form.attrib.get("action") or here))[0]
    if origin_of(action) != origin_of(here):
        # Another host, port or scheme (https -> http included) would receive the password.
        scheme, host, port = origin_of(action)
        raise LoginFailed(
            login.url,
            f"form action {scheme}://{host}:{port} is not the login page's origin "
            f"({here}): the password is not sent",
            page.status,
        )
    return method, action, out


def _option_value(option: Any) -> str:
    value = option.attrib.get("value")
    return str(value) if value is not None else str(option.xpath("string()").get() or "").strip()
