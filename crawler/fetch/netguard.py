"""No way into the LAN through the crawler: which addresses a source may connect to.

An address the user wrote is trusted; anything else must be public. The IP literals and
`localhost` written in a source's own URLs (and its proxy's host) are trusted; every other
destination -- a redirect, a followed link, a sitemap or feed entry, robots.txt, or a configured
*hostname* -- is refused when it resolves to a loopback, private, link-local, shared (CGNAT),
multicast, reserved or unspecified address, IPv4 or IPv6 (IPv4-mapped IPv6 is judged as the
IPv4 address it carries). A source opts in with `allow_private: true`; `fetch.
allow_private_networks` lists networks every source may reach.

The check runs on the addresses a connection is about to be opened to, in the connector
(`GuardedConnector`), after DNS and after aiohttp's DNS cache: what is checked is what is
connected to, so a name that resolves to a public address once and a private one later (DNS
rebinding) is caught at the connection that would use it. Which source is fetching comes from a
context variable set around each fetch (`guarding`); a connection opened outside any fetch is
judged with no trust at all.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from crawler.errors import ErrorKind, FetchError

if TYPE_CHECKING:
    from crawler.config.root import Config
    from crawler.config.sources import SourceConfig

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Shared address space (RFC 6598): carrier-grade NAT, and many ISP routers' own pages. Python's
# is_private leaves it out, so it is named here.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def category(ip: Address) -> str | None:
    """Why `ip` is not a public address (a short word for messages), or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "shared (CGNAT)"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:  # documentation, benchmarking and other special-purpose ranges
        return "special-purpose"
    return None


def _ip(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class SourcePolicy:
    """Where one source may connect: its written literals, its opt-in, the global allow-list."""

    source: str
    trusted: frozenset[str]  # IP literals (normalised) and "localhost" written by the user
    allow_private: bool = False
    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, source: SourceConfig, config: Config) -> SourcePolicy:
        urls = list(source.urls)
        # Every URL the user wrote for the source: its sitemap, and the proxies it goes through.
        sitemap = source.sitemap
        written = (
            sitemap.url if sitemap is not None else None,
            sitemap.site if sitemap is not None else None,
            config.fetch.proxy,
            source.request.proxy if source.request else None,
            source.login.url if source.login else None,
        )
        urls.extend(u for u in written if u and u != "robots")
        return cls(
            source=source.name,
            trusted=frozenset(_written_hosts(urls)),
            allow_private=source.allow_private,
            networks=config.fetch.allow_private_networks,
        )

    def check(self, hostname: str, address: str) -> None:
        """Raise FetchError(BLOCKED_ADDRESS) unless this source may connect to `address`."""
        ip = _ip(address)
        if ip is None or self.allow_private:
            return
        why = category(ip)
        if why is None:
            return
        if any(ip in net for net in self.networks):
            return
        name = hostname.strip("[]").rstrip(".").lower()
        literal = _ip(name)
        if (str(literal) if literal is not None else name) in self.trusted:
            return
        shown = hostname if literal is not None else f"{hostname} ({ip})"
        raise FetchError(
            ErrorKind.BLOCKED_ADDRESS,
            f"{shown} is a {why} address, and only addresses written in the source's own URLs "
            f"may be: refused. To crawl it, set `allow_private: true` on source "
            f"{self.source!r} (or list its network in fetch.allow_private_networks)",
        )


def _written_hosts(urls: Iterable[str]) -> Iterator[str]:
    """The IP literals (normalised) and `localhost` among the hosts of `urls`."""
    for url in urls:
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
        ip = _ip(host)
        if ip is not None:
            yield str(ip)
        elif host == "localhost":
            yield host


_current: ContextVar[SourcePolicy | None] = ContextVar("crawler_netguard_policy", default=None)
_NO_TRUST = SourcePolicy(source="(none)", trusted=frozenset())


@contextlib.contextmanager
def guarding(policy: SourcePolicy) -> Iterator[None]:
    """Connections opened inside are judged by `policy` (tasks started inside inherit it)."""
    token = _current.set(policy)
    try:
        yield
    finally:
        _current.reset(token)


class GuardedConnector(aiohttp.TCPConnector):
    """aiohttp's connector, refusing addresses the fetching source may not reach.

    `_resolve_host` is where aiohttp turns a URL's host into the addresses it connects to, IP
    literals included (aiohttp calls it the place for a "connector-level policy"); each answer,
    cached or fresh, is checked for the source fetching now. Answers that may not be used are
    dropped; when none is left the connection fails with `blocked_address`.
    """

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Any] | None = None
    ) -> list[Any]:
        hosts = await super()._resolve_host(host, port, traces=traces)
        policy = _current.get() or _NO_TRUST
        allowed, refusal = [], None
        for entry in hosts:
            try:
                policy.check(host, entry["host"])
            except FetchError as exc:
                refusal = refusal or exc
                continue
            allowed.append(entry)
        if not allowed and refusal is not None:
            raise refusal
        return allowed
