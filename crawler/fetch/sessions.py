"""Sessions: a source run's cookie jar and login token, kept across runs and renewed.

`RunSession` is one source run's session, made by `Fetcher.begin_run()` (`Sessions.begin`) and
reachable for the whole run as `fetcher.sessions.get(source.name)`: the run's cookie jar (`.jar`,
None with `cookies: false`; a rendered page's requests are fetched through it too, so they carry
the run's cookies: none are put into the browser), the bearer token of a JSON login, and the logins
made this run. A source with a `login` logs in before its first page unless a stored session is
loaded (`ensure()`); when a page says the session expired (`expired()`: HTTP 401/403, redirected to
the login URL, or the login form again), `fetch()` logs in again — once for all the workers that
saw it expire (`renew()`) — within `login.max_per_run` logins, and fetches the page again.

`SessionStore` keeps a successful login's session for the next runs, under
`<state_dir>/sessions/` (a 0700 directory): `<source>.json` (when it logged in, for which
login URL and user, the token) and `<source>.cookies` (aiohttp's JSON cookie format), both
0600, written to a temporary file, fsynced and renamed. Never in PostgreSQL, never in a log
line: logs name cookies, never their values. A stored file that cannot be read back (truncated,
not JSON, the wrong shape) costs a WARNING and is deleted: the run logs in afresh. A session
found expired is deleted at once, so a login that then fails leaves nothing stale behind; a
login failing for another reason (the site down) leaves the stored session as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from crawler.config.login import LoginConfig
from crawler.config.sources import SourceConfig
from crawler.errors import ErrorKind, FetchError, LoginFailed
from crawler.fetch import cookies
from crawler.fetch.login import Login, Send, has_password_input, log_in, origin_of, same_page
from crawler.fetch.request import _read_secret, redact
from crawler.fetch.transport import Page
from crawler.observability.metrics import Metrics

log = logging.getLogger("crawler.fetch")

_FORMAT = 1


class SessionStore:
    """Sessions kept across runs, one pair of 0600 files per source with a login."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _paths(self, source: str) -> tuple[Path, Path]:
        return self.directory / f"{source}.json", self.directory / f"{source}.cookies"

    def load(self, source: str, owner: str, jar: aiohttp.CookieJar | None) -> dict[str, Any] | None:
        """The stored session of `source` for this login (its cookies loaded into `jar`), or
        None: none stored, another login's, or unreadable — truncated, not JSON, the wrong
        shape, a hostile value — which costs one WARNING and both files deleted, never an
        exception (the run then starts with an empty jar and logs in)."""
        meta_path, jar_path = self._paths(source)
        reading = meta_path
        try:
            meta = _meta(json.loads(meta_path.read_text(encoding="utf-8")))
            if meta.get("login") != owner:
                return None  # the login changed (URL or user): this session is not its
            if jar is not None and jar_path.exists():
                reading = jar_path
                _load_jar(jar, jar_path)
        except FileNotFoundError:
            return None
        except Exception as exc:  # anything a damaged or hostile file raises: the edge
            # The file and the error's type, never its text: it may quote a cookie value.
            log.warning(
                "stored session unreadable: deleted",
                extra={"source": source, "path": str(reading), "error": type(exc).__name__},
            )
            if jar is not None:
                jar.clear()  # a fresh empty jar, nothing half-loaded
            self.drop(source)
            return None
        return meta

    def save(
        self, source: str, owner: str, at: float, token: str | None, jar: aiohttp.CookieJar | None
    ) -> None:
        """Store the session: each file written to a temporary file, fsynced, renamed over the
        old one, and the directory fsynced, so a power cut leaves the old file or the new one."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)  # also when it was made by hand, or under another umask
        meta_path, jar_path = self._paths(source)
        if jar is not None:
            tmp = jar_path.with_suffix(".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()  # aiohttp creates it 0600 only when it is new
            jar.save(tmp)
            os.chmod(tmp, 0o600)
            _fsync(tmp)
            os.replace(tmp, jar_path)
        meta = {"format": _FORMAT, "login": owner, "logged_in_at": at, "token": token}
        tmp = meta_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, meta_path)
        _fsync(self.directory)

    def drop(self, source: str) -> None:
        for path in self._paths(source):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _meta(doc: object) -> dict[str, Any]:
    """A stored session's metadata, its shape checked; raise ValueError."""
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise ValueError("unknown format")
    at, token = doc.get("logged_in_at"), doc.get("token")
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        raise ValueError("logged_in_at is not a number")
    if token is not None and (not isinstance(token, str) or "\n" in token or "\r" in token):
        raise ValueError("token is not one line of text")
    return doc


def _load_jar(jar: aiohttp.CookieJar, path: Path) -> None:
    """Load a cookie file in aiohttp's JSON format, and only that: aiohttp falls back to
    unpickling a file that is not JSON, which a stored session never is."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise ValueError("not a cookie jar")
    jar.load(path)  # JSON, so aiohttp reads it as JSON


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Sessions:
    """The running sessions, one per source run, and the store that keeps them across runs."""

    def __init__(
        self,
        metrics: Metrics,
        state_dir: Path,
        keep: bool,
        send: Callable[[SourceConfig, Login], Awaitable[Page]],
    ) -> None:
        self.metrics, self._send = metrics, send
        self.store = SessionStore(state_dir / "sessions") if keep else None
        self._running: dict[str, RunSession] = {}

    def begin(self, source: SourceConfig) -> None:
        """A run of `source` starts: a fresh session (none with `cookies: false` and no login)."""
        self._running.pop(source.name, None)
        if source.cookies or source.login is not None:
            self._running[source.name] = RunSession(source, self.metrics, self.store)

    def get(self, source: str) -> RunSession | None:
        return self._running.get(source)

    def end(self, source: SourceConfig) -> None:
        """The run ended: its session is kept for the next run, its jar dropped."""
        session = self._running.pop(source.name, None)
        if session is not None:
            session.keep()

    async def log_in(self, source: SourceConfig) -> None:
        """Before the run's first page: the stored session, or a login; raise LoginFailed."""
        session = self._running.get(source.name)
        if session is not None and session.login is not None:
            await session.ensure(functools.partial(self._send, source))

    async def fetch(
        self, source: SourceConfig, url: str, fetch: Callable[[], Awaitable[Page]]
    ) -> Page:
        """`fetch()` the page; with a login, again after a new login if it says the session
        expired (`RunSession.fetch`)."""
        session = self._running.get(source.name)
        if session is None or session.login is None:
            return await fetch()
        send = functools.partial(self._send, source)
        return await session.fetch(url, fetch, send, html=source.parser == "html")


class RunSession:
    """One source run's cookies, token and logins (see the module docstring)."""

    def __init__(self, source: SourceConfig, metrics: Metrics, store: SessionStore | None) -> None:
        self.name, self.login, self.metrics, self.store = source.name, source.login, metrics, store
        self.jar = cookies.new_jar() if source.cookies else None
        self.token: str | None = None
        self.logged_in_at: float | None = None
        self.logins = 0
        self.generation = 0  # bumped by every login: a worker knows whether one happened
        self._lock = asyncio.Lock()
        self._password: str | None = None
        self._unsaved = False  # cookies came since the session was stored (or loaded)
        # The token goes back only where it came from: not to the source's other hosts, nor
        # over plain http when the login was https.
        self._token_origin = origin_of(self.login.url) if self.login is not None else None

    # -- what every request of the run carries ----------------------------------------------

    def headers_for(self, url: str) -> dict[str, str]:
        """The run's `Cookie` header for `url`, and its bearer token to the login's origin."""
        out: dict[str, str] = {}
        if self.jar is not None and (header := cookies.cookie_header(self.jar, url)):
            out["Cookie"] = header
        if self.token is not None and origin_of(url) == self._token_origin:
            out["Authorization"] = f"Bearer {self.token}"
        return out

    def take(self, resp: aiohttp.ClientResponse) -> None:
        if self.jar is not None and resp.cookies:
            cookies.take(self.jar, resp.cookies, resp.url)
            self._unsaved = True

    def secrets(self) -> tuple[str, ...]:
        """Values to blank out of any text bound for a log line or `crawler_jobs`."""
        out = [s for s in (self._password, self.token) if s]
        if self.jar is not None:
            out += cookies.values(self.jar)
        return tuple(out)

    # -- logging in -------------------------------------------------------------------------

    async def ensure(self, send: Send) -> None:
        """Before the run's first page: load the stored session, or log in when none is."""
        if self.login is None:
            return
        if self.store is not None:
            meta = self.store.load(self.name, login_id(self.login), self.jar)
            usable = meta is not None and (
                meta.get("token") if self.login.is_json else self.jar is None or len(self.jar)
            )
            if meta is not None and usable:
                self.token = meta.get("token") if self.login.is_json else None
                self.logged_in_at = float(meta.get("logged_in_at") or time.time())
                self._watch_age()
                log.info(
                    "session reused",
                    extra={
                        "source": self.name,
                        "age_s": round(time.time() - self.logged_in_at),
                        "cookies": ", ".join(cookies.names(self.jar)) if self.jar else None,
                    },
                )
                return
        await self._log_in(send, "no stored session")

    def expired(
        self, status: int | None, final_url: str | None, body: bytes, html: bool
    ) -> str | None:
        """Why a page says the session expired, or None: HTTP 401/403, redirected to the
        login URL, or (a form login's html page) the login form again."""
        if self.login is None:
            return None
        if status in (401, 403):
            return f"HTTP {status}"
        if final_url is not None and same_page(final_url, self.login.url):
            return "redirected to the login URL"
        if html and not self.login.is_json and has_password_input(body):
            return "the page is the login form"
        return None

    async def fetch(
        self, url: str, fetch: Callable[[], Awaitable[Page]], send: Send, *, html: bool
    ) -> Page:
        """The page, fetched again after one new login when it says the session expired;
        raise FetchError(LOGIN) when it still does, LoginFailed when the login fails."""
        for attempt in (1, 2):
            generation = self.generation
            try:
                page = await fetch()
            except FetchError as exc:
                reason = self.expired(exc.status, None, b"", False)
                if reason is None:
                    raise
            else:
                reason = self.expired(page.status, page.final_url, page.body, html)
                if reason is None:
                    return page
            if attempt == 2:
                raise FetchError(ErrorKind.LOGIN, f"logged out again after a new login ({reason})")
            await self.renew(generation, reason, url, send)
        raise AssertionError("unreachable")

    async def renew(self, generation: int, reason: str, url: str, send: Send) -> None:
        """Log in again after a page at `url` said the session expired, unless another worker
        already did since `generation`; raise LoginFailed."""
        async with self._lock:
            if self.generation != generation:
                return  # renewed meanwhile: the page is simply fetched again
            log.info("session expired", extra={"source": self.name, "url": url, "reason": reason})
            if self.store is not None:
                self.store.drop(self.name)  # known bad: never loaded again
            if self.jar is not None:
                self.jar.clear()
            self.token = self.logged_in_at = None
            await self._log_in(send, f"session expired ({reason})")

    async def _log_in(self, send: Send, why: str) -> None:
        login = self.login
        assert login is not None
        if self.logins >= login.max_per_run:  # the page fails, not the run: no login was tried
            raise FetchError(
                ErrorKind.LOGIN,
                f"{why}, and this run already logged in {self.logins} time(s) "
                f"(login.max_per_run: {login.max_per_run})",
            )
        self.logins += 1
        counter = self.metrics.logins
        try:
            self._password = _read_secret(login.password_env, login.password_file, "login password")
            token = await log_in(login, self._password, send)
        except LoginFailed as exc:
            counter.labels(self.name, "failed").inc()
            # Its text may quote what a hostile server echoed (the password, a cookie) in a URL
            # or a page: blanked out here, since the run's result and `crawler_jobs` keep it.
            clean = LoginFailed(self.redact(exc.url), self.redact(exc.reason), exc.status)
            log.error(
                "login failed",
                extra={
                    "source": self.name,
                    "url": clean.url,
                    "status": exc.status,
                    "error_kind": "login",
                    "error": str(clean),
                    "user": login.username,
                },
            )
            raise clean from None
        counter.labels(self.name, "ok").inc()
        self.token = token
        self.logged_in_at = time.time()
        self.generation += 1
        self._watch_age()
        log.info(
            "logged in",
            extra={
                "source": self.name,
                "url": login.url,
                "user": login.username,
                "reason": why,
                "cookies": ", ".join(cookies.names(self.jar)) if self.jar else None,
            },
        )
        self._unsaved = True
        self.keep()

    def keep(self) -> None:
        """Store the session for the next runs: after a login, and at the run's end when the
        site set cookies meanwhile (a renewed expiry); a run that got none writes nothing (the
        state directory is on an SD card)."""
        if not self._unsaved or self.login is None or self.logged_in_at is None:
            return
        if self.store is not None:
            owner = login_id(self.login)
            self.store.save(self.name, owner, self.logged_in_at, self.token, self.jar)
        self._unsaved = False

    def describe(self) -> str:
        """`logged in as USER; session cookies: NAMES` (names, never values)."""
        user = self.login.username if self.login is not None else "?"
        names = ", ".join(cookies.names(self.jar)) if self.jar is not None else ""
        kept = f"session cookies: {names or 'none'}"
        return f"logged in as {user}; " + (f"token, {kept}" if self.token else kept)

    def redact(self, text: str) -> str:
        return redact(text, self.secrets())

    def _watch_age(self) -> None:
        at = self.logged_in_at
        if at is not None:
            self.metrics.session_age.labels(self.name).set_function(lambda: time.time() - at)


def login_id(login: LoginConfig) -> str:
    """Which login a stored session belongs to: a changed URL or user name starts afresh."""
    text = f"{login.url}\n{login.username}\n{login.is_json}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
