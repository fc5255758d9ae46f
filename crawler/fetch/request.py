"""One run's request (`Prepared`), made from a source's `request:` section
(crawler/config/request.py): method, body, headers (some of them secret), auth, proxy.

`prepare()` turns the configured options into the `Prepared` request of one run. It runs at the
start of every run, so a `headers_file` or token file that another process rotates (expiring
cookies, short-lived tokens) is read afresh each time, and a file that went missing fails that
run with a message naming the file, never its content.

Secret values (everything read from `headers_file`, `auth`, the environment, and the password
of a proxy URL) are collected in `Prepared.secrets`; `Prepared.redact()` blanks them out of any
text bound for a log line, a metric or `crawler_jobs.error`, as they are and as a URL, a form
body or a page spells them (`redact()`). Secret headers are sent only to the
origin of the URL asked for, never along a redirect to another host.

The method and body take part in the request's identity (`Prepared.key`): the conditional-GET
state and the within-run dedupe of URLs tell `POST /search {"page": 1}` from a GET of it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlencode, urlsplit
from urllib.request import (  # type: ignore[attr-defined]  # public, not in typeshed
    getproxies_environment,
    proxy_bypass_environment,
)

from crawler.config.request import RequestConfig, read_headers_file
from crawler.errors import SecretUnavailable

_REDACTED = "[redacted]"


# A character's spellings besides itself in a URL or a page that echoes it back.
_ENTITIES = {
    "&": ("&amp;",),
    "<": ("&lt;",),
    ">": ("&gt;",),
    '"': ("&quot;",),
    "'": ("&#39;", "&#x27;"),
}


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret blanked out as it is and as a URL, a form body or an HTML page
    spells it (`%40`, `%c3%bc`, `+` for a space, `&amp;`, in any mix: yarl decodes some
    escapes of a redirect's URL and keeps others), longest secret first."""
    for value in sorted(set(secrets) - {""}, key=len, reverse=True):
        text = _spellings(value).sub(lambda _: _REDACTED, text)
    return text


@functools.lru_cache(maxsize=256)
def _spellings(value: str) -> re.Pattern[str]:
    parts = []
    for ch in value:
        alts = [re.escape(ch), *map(re.escape, _ENTITIES.get(ch, ()))]
        escaped = "".join(f"%{_hex(b >> 4)}{_hex(b & 15)}" for b in ch.encode("utf-8"))
        alts.append(escaped)
        if ch == " ":
            alts.append(r"\+")
        parts.append("(?:" + "|".join(alts) + ")")
    return re.compile("".join(parts))


def _hex(digit: int) -> str:
    h = f"{digit:X}"
    return f"[{h}{h.lower()}]" if h.isalpha() else h


def _read_secret(env: str | None, file: Path | None, what: str) -> str:
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise SecretUnavailable(f"{what}: environment variable {env} is not set")
        return value.strip()
    assert file is not None
    try:
        return file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        detail = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise SecretUnavailable(f"{what}: cannot read {file}: {detail}") from None


@dataclass(frozen=True)
class Prepared:
    """The request of one source run, secrets resolved."""

    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every request
    secret_headers: Mapping[str, str] = field(default_factory=dict)  # same origin only
    data: bytes | None = None
    proxy: str | None = None
    secrets: tuple[str, ...] = ()
    identity: str = ""  # "" for a plain GET: the URL alone identifies it

    def key(self, url: str) -> str:
        """The request's identity for conditional GET and the within-run dedupe."""
        return f"{url} {self.identity}" if self.identity else url

    def redact(self, text: str) -> str:
        """`text` with every secret value blanked out, in any spelling (`redact`)."""
        return redact(text, self.secrets)

    def asked_by_page(self, wanted: Prepared) -> Prepared:
        """These options for a request a rendered page made: `wanted`'s method, body and
        headers added (the page's `Accept`, `Content-Type`); the secrets and proxy kept."""
        headers = {**self.headers, **wanted.headers}
        return replace(self, method=wanted.method, data=wanted.data, headers=headers)

    def headers_for(self, url: str, origin: str) -> dict[str, str]:
        """Headers for a request to `url` made on behalf of a URL whose origin is `origin`."""
        out = dict(self.headers)
        if self.secret_headers and _origin(url) == origin:
            out.update(self.secret_headers)
        return out


PLAIN = Prepared()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin(url: str) -> str:
    """scheme://host:port of a URL, the scope of its secret headers."""
    return _origin(url)


def _secrets_of_proxy(url: str | None) -> list[str]:
    if not url:
        return []
    parts = urlsplit(url)
    return [p for p in (parts.password,) if p]


def prepare(
    req: RequestConfig | None, user_agent: str | None = None, fetch_proxy: str | None = None
) -> Prepared:
    """The request of one run; raise SecretUnavailable when a secret cannot be read.

    `fetch_proxy` is the configured `fetch.proxy`: its password is a secret too."""
    headers: dict[str, str] = {}
    if user_agent:
        headers["User-Agent"] = user_agent
    if req is None:
        base = (*_secrets_of_proxy(fetch_proxy), *environment_secrets())
        return Prepared(headers=headers, secrets=base) if headers or base else PLAIN
    headers.update(req.headers)
    secret: dict[str, str] = {}
    if req.headers_file is not None:
        secret.update(read_headers_file(req.headers_file))
    auth = req.auth
    if auth is not None:
        if auth.bearer_env is not None or auth.bearer_file is not None:
            token = _read_secret(auth.bearer_env, auth.bearer_file, "auth bearer token")
            secret["Authorization"] = f"Bearer {token}"
        elif auth.basic_user is not None:
            password = _read_secret(auth.password_env, auth.password_file, "auth password")
            pair = base64.b64encode(f"{auth.basic_user}:{password}".encode()).decode("ascii")
            secret["Authorization"] = f"Basic {pair}"
    data: bytes | None = None
    if req.json is not None:
        data = req.json.encode()
        headers.setdefault("Content-Type", "application/json")
    elif req.form is not None:
        data = urlencode(req.form).encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif req.body is not None:
        data = req.body.encode()
    values = {v for v in secret.values() if v}
    # The bare token and password too: a server may echo them back without the scheme.
    for v in list(values):
        scheme, _, rest = v.partition(" ")
        if scheme in ("Bearer", "Basic") and rest:
            values.add(rest)
    values.update(_secrets_of_proxy(req.proxy))
    values.update(_secrets_of_proxy(fetch_proxy))
    values.update(environment_secrets())
    identity = ""
    if req.method != "GET" or data is not None:
        digest = hashlib.blake2b(data or b"", digest_size=8).hexdigest()
        identity = f"{req.method} {digest}"
    return Prepared(
        method=req.method,
        headers=headers,
        secret_headers=secret,
        data=data,
        proxy=req.proxy,
        # Longest first, so a token inside a longer header value is blanked as a whole.
        secrets=tuple(sorted(values, key=len, reverse=True)),
        identity=identity,
    )


def environment_secrets() -> tuple[str, ...]:
    """Passwords in the standard proxy variables, to be kept out of logs like the others."""
    out = []
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        out += _secrets_of_proxy(os.environ.get(name))
    return tuple(out)


class EnvProxies:
    """The standard proxy variables (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`, lower case winning),
    read once when the fetcher opens.

    aiohttp's `trust_env` would read them, and `~/.netrc`, in a worker thread on every request:
    two thread hops and a file read per page, on a Pi core, for variables that do not change
    while the process runs. Credentials come from the configuration (`request.auth`), never from
    `~/.netrc`. The answer per scheme and host is remembered (a few hundred hosts at most).
    """

    _MAX_HOSTS = 512

    def __init__(self) -> None:
        proxies = getproxies_environment()
        # aiohttp proxies these two schemes; ALL_PROXY was never honoured and is not now.
        self._by_scheme = {k: v for k, v in proxies.items() if k in ("http", "https")}
        self._proxies = proxies
        self._known: dict[tuple[str, str], str | None] = {}

    def __bool__(self) -> bool:
        return bool(self._by_scheme)

    def for_url(self, url: str) -> str | None:
        """The proxy for `url` from the environment, or None (none set, or NO_PROXY matches)."""
        if not self._by_scheme:
            return None
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if key in self._known:
            return self._known[key]
        proxy = self._by_scheme.get(parts.scheme)
        if (
            proxy is not None
            and parts.hostname
            and proxy_bypass_environment(parts.hostname, self._proxies)
        ):
            proxy = None
        if len(self._known) >= self._MAX_HOSTS:
            self._known.clear()
        self._known[key] = proxy
        return proxy
