"""A source run's cookies: one aiohttp `CookieJar` per run, fed by hand at every hop.

The process's one `ClientSession` keeps no cookies (`DummyCookieJar`): jars are never shared
between sources. Each run of a source with `cookies: true` (the default) gets a fresh jar
(`new_jar()`); the fetcher sends it with every request of the run (`cookie_header()`) and
gives it each response's `Set-Cookie` headers (`take()`), redirect hops included, since a
login's session cookie usually arrives on a 302. aiohttp's jar applies RFC 6265's rules
(domain and path matching, `Secure`, `Max-Age`/`Expires`); it is made `unsafe` so IP-literal
hosts (a NAS at 192.168.1.10, a test site on 127.0.0.1) keep their cookies too. What aiohttp
does not check, `take()` does: a `Domain=` that is a public suffix (`co.uk`, `github.io`) is
refused, as browsers do, from the Public Suffix List that the `publicsuffixlist` package ships
(offline, loaded on the first cookie that names a domain: 0.15-0.27 s and ~2.4 MiB of
RSS once per process on the development machine).

Sessions kept across runs are saved and loaded with aiohttp's own JSON format
(`CookieJar.save`, file mode 0600; `crawler.fetch.sessions` owns where).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from http.cookies import BaseCookie, Morsel
from typing import TYPE_CHECKING

import aiohttp
import yarl

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

log = logging.getLogger("crawler.fetch")


def new_jar() -> aiohttp.CookieJar:
    """An empty jar for one source run (IP-literal hosts included)."""
    return aiohttp.CookieJar(unsafe=True)


@functools.cache
def _suffixes() -> PublicSuffixList:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def refusal(morsel: Morsel[str], host: str) -> str | None:
    """Why a cookie set by `host` must be refused (its domain), or None to accept it.

    RFC 6265 5.3 step 5: a `Domain=` naming a public suffix is ignored when it is the host
    itself (the cookie becomes host-only) and refuses the cookie otherwise, so `shop.co.uk`
    cannot set a cookie every `*.co.uk` site would receive. An IP-literal host may only name
    itself. Domain matching proper (a host setting another site's domain) is aiohttp's.
    """
    domain = (morsel["domain"] or "").lstrip(".").rstrip(".").lower()
    if not domain:
        return None
    host = host.lower()
    if _is_ip(host):
        return None if domain == host else f"domain {domain} set by IP address {host}"
    if _suffixes().is_public(domain):
        if domain == host:
            morsel["domain"] = ""  # host-only, as RFC 6265 says
            return None
        return f"domain {domain} is a public suffix"
    return None


def take(jar: aiohttp.CookieJar, cookies: BaseCookie[str], url: yarl.URL) -> int:
    """Put a response's cookies into the run's jar; return how many were refused."""
    if not cookies:
        return 0
    host = url.raw_host or ""
    accepted: BaseCookie[str] = BaseCookie()
    refused = 0
    for name, morsel in cookies.items():
        reason = refusal(morsel, host)
        if reason is None:
            dict.__setitem__(accepted, name, morsel)  # the morsel as it is, attributes kept
            continue
        refused += 1
        # The cookie's name and why, never its value (a session id is a secret).
        log.info(
            "cookie refused",
            extra={"url": str(url.with_query(None)), "cookie": name, "reason": reason},
        )
    if accepted:
        jar.update_cookies(accepted, url)
    return refused


def cookie_header(jar: aiohttp.CookieJar, url: str) -> str | None:
    """The `Cookie` header the jar holds for `url` (domain, path, `Secure`, expiry), or None."""
    if not len(jar):  # most sites set none: no URL parsed for them
        return None
    found = jar.filter_cookies(yarl.URL(url))
    if not found:
        return None
    return "; ".join(f"{m.key}={m.coded_value}" for m in found.values())


def names(jar: aiohttp.CookieJar) -> list[str]:
    """The names of the cookies in the jar, sorted (what `crawler preview` may show)."""
    return sorted({m.key for m in jar})


def values(jar: aiohttp.CookieJar) -> list[str]:
    """The cookie values in the jar: secrets to blank out of any text bound for a log."""
    return [m.value for m in jar if len(m.value) >= 4]
