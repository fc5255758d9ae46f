"""Login edge cases, on a hand-written aiohttp site (tests/site.py's `Site`, routes added).

A members area behind a form login: `/login` (a form with a hidden CSRF token that must match
the `csrf` cookie, as Django's does), `/members/<i>` (20 quotes, or a redirect to
`/login?next=…` without a valid `sid` cookie), `/home` (a page outside the members area). `expire_after`: the sessions end after that
many member pages were served (a session expiring mid-run). A JSON API behind a token:
`POST /auth/login` (`{"user": …, "pass": …, "client": …}`) answers
`{"data": {"access_token": …}}`; `/api/items/<i>` wants `Authorization: Bearer …`, else 401.
`/cookie/set` sets a cookie (and one for the public suffix `co.uk`), `/cookie/show` records
the `Cookie` header it received. Every `Cookie` header received is kept in `cookies_seen`.
"""

from __future__ import annotations

import html
import json
import secrets
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.site import Site, html_page, items

USER = "crawler"
FORM = """<html><body><h1>Members</h1>
<form id="login" method="post" action="{action}">
  <input type="hidden" name="csrf" value="{csrf}">
  <input type="hidden" name="next" value="{next}">
  <input type="text" name="who" value="">
  <input type="password" name="secret">
  <input type="checkbox" name="remember" value="yes">
  <input type="submit" value="Log in">
</form>{error}</body></html>"""


class LoginSite:
    """The site; `password` is what the login accepts."""

    def __init__(self, password: str, host: str = "127.0.0.1") -> None:
        self.password = password
        self.site = Site(host)
        self.sessions: set[str] = set()
        self.tokens: set[str] = set()
        self.form_logins: list[dict[str, str]] = []  # every login POST's form (no password)
        self.api_logins: list[dict[str, Any]] = []
        self.expire_after: int | None = None  # member pages served before sessions end
        self.member_pages = 0
        self.expire_always = False  # every session ends with the page it served
        self.cookies_seen: list[tuple[str, str | None]] = []  # (path, Cookie header)
        self.auth_seen: list[tuple[str, str | None]] = []  # (path, Authorization header)
        self.form_action = "/login"  # where the login form posts (another origin: a phish)
        self.login_redirect: tuple[int, str] | None = None  # the login POST's answer instead
        self.echo = False  # a hostile site: a wrong password echoed in a redirect and a page
        app = self.site.app
        app.middlewares.append(self._record_cookies)
        app.router.add_get("/login", self._form)
        app.router.add_post("/login", self._login)
        app.router.add_get("/members/{i}", self._members)
        app.router.add_get("/leak", self._leak)
        app.router.add_get("/robots.txt", self._robots)
        app.router.add_get("/home", self._home)
        app.router.add_post("/auth/login", self._api_login)
        app.router.add_get("/api/items/{i}", self._api_items)
        app.router.add_get("/cookie/set", self._cookie_set)
        app.router.add_get("/cookie/show", self._cookie_show)

    @property
    def base(self) -> str:
        return self.site.base

    @property
    def hits(self) -> Any:
        return self.site.hits

    def start(self) -> LoginSite:
        self.site.start()
        return self

    def stop(self) -> None:
        self.site.stop()

    @web.middleware
    async def _record_cookies(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.cookies_seen.append((request.path, request.headers.get("Cookie")))
        self.auth_seen.append((request.path, request.headers.get("Authorization")))
        return await handler(request)  # type: ignore[no-any-return]

    # -- the form login ------------------------------------------------------------------------

    async def _form(self, request: web.Request, error: str = "") -> web.Response:
        csrf = secrets.token_hex(8)
        next_ = request.query.get("next", "/members/0")
        if "tried" in request.query:
            error = f"<p class=error>Wrong password {html.escape(request.query['tried'])}</p>"
        body = FORM.format(csrf=csrf, next=next_, error=error, action=self.form_action)
        resp = web.Response(text=body, content_type="text/html")
        resp.set_cookie("csrf", csrf, path="/")
        return resp

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        fields = {k: str(v) for k, v in form.items()}
        self.form_logins.append({k: v for k, v in fields.items() if k != "secret"})
        if self.login_redirect is not None:
            status, location = self.login_redirect
            return web.Response(status=status, headers={"Location": location})
        if not fields.get("csrf") or fields.get("csrf") != request.cookies.get("csrf"):
            return web.Response(status=403, text="CSRF check failed")
        if fields.get("who") != USER or fields.get("secret") != self.password:
            if self.echo:
                raise web.HTTPFound("/login?" + urlencode({"tried": fields.get("secret", "")}))
            return await self._form(request, error="<p class=error>Wrong password</p>")
        sid = secrets.token_hex(16)
        self.sessions.add(sid)
        resp = web.HTTPFound(fields.get("next") or "/members/0")
        resp.set_cookie("sid", sid, path="/", httponly=True)
        raise resp

    async def _members(self, request: web.Request) -> web.Response:
        if request.cookies.get("sid") not in self.sessions:
            raise web.HTTPFound(f"/login?next={request.path}")
        self.member_pages += 1
        if self.expire_after is not None and self.member_pages >= self.expire_after:
            self.sessions.clear()  # this page is served; the next ones find the session gone
            self.expire_after = None
        if self.expire_always:
            self.sessions.clear()
        return web.Response(body=html_page(int(request.match_info["i"])), content_type="text/html")

    async def _leak(self, request: web.Request) -> web.Response:
        """A page that redirects to a URL holding the session cookie's value, which robots.txt
        refuses: the fetch error names the URL."""
        raise web.HTTPFound("/private/?" + urlencode({"sid": request.cookies.get("sid", "")}))

    async def _robots(self, request: web.Request) -> web.Response:
        return web.Response(text="User-agent: *\nDisallow: /private/\n")

    async def _home(self, request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Welcome</body></html>", content_type="text/html")

    # -- the JSON token API --------------------------------------------------------------------

    async def _api_login(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.api_logins.append({k: v for k, v in body.items() if k != "pass"})
        if body.get("user") != USER or body.get("pass") != self.password:
            return web.json_response({"error": "bad credentials"}, status=401)
        token = secrets.token_hex(16)
        self.tokens.add(token)
        return web.json_response({"data": {"access_token": token, "type": "bearer"}})

    async def _api_items(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.tokens:
            return web.json_response({"error": "unauthorized"}, status=401)
        i = int(request.match_info["i"])
        return web.Response(
            text=json.dumps({"page": i, "items": items(i)}), content_type="application/json"
        )

    # -- plain cookies -------------------------------------------------------------------------

    async def _cookie_set(self, request: web.Request) -> web.Response:
        resp = web.Response(body=html_page(0), content_type="text/html")
        resp.set_cookie("visit", "v1", path="/")
        resp.headers.add("Set-Cookie", "wide=1; Domain=co.uk; Path=/")
        return resp

    async def _cookie_show(self, request: web.Request) -> web.Response:
        if request.cookies.get("visit") != "v1":
            return web.Response(status=403, text="no visit cookie")
        return web.Response(body=html_page(1), content_type="text/html")
