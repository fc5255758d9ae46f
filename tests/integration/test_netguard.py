"""No way into the LAN through the crawler (crawler/fetch/netguard.py), with real sites and a real crawl.

Two aiohttp sites play two machines: the source's own site on 127.0.0.1, written in the
configuration and so trusted, and a second one on 127.0.0.2 that nothing in the configuration
names, standing for the router or the NAS. Every way of being led to the second one is refused
before a connection is made (its hit counter stays 0) and counted as `blocked_address`; each is
allowed with `allow_private: true`. A configured *hostname* is resolved by a resolver the test
injects (the machine's DNS is never asked) to a private address: refused too, unless allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from prometheus_client import CollectorRegistry

from crawler.config.root import load_config
from crawler.run.result import RunResult
from crawler.service import Service
from tests.crawler_proc import run_cli
from tests.helpers import free_port, self_signed_certificate
from tests.site import Site, StaticResolver


@pytest.fixture
def lan() -> Iterator[Site]:
    """The machine nobody wrote into the configuration, on 127.0.0.2."""
    s = Site(host="127.0.0.2").start()
    yield s
    s.stop()


@contextlib.contextmanager
def own_site(routes: dict[str, str], pages: dict[str, str] | None = None) -> Iterator[Site]:
    """The source's site on 127.0.0.1, with `routes` that redirect (path -> Location) and
    `pages` of HTML (path -> body)."""
    s = Site()
    for path, location in routes.items():
        s.app.router.add_get(path, redirect_to(location))
    for path, body in (pages or {}).items():
        s.app.router.add_get(path, html(body))
    s.start()
    try:
        yield s
    finally:
        s.stop()


def html(body: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/html")

    return handler


def redirect_to(location: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound(location)

    return handler


def crawl(
    tmp_path: Path,
    url: str,
    *,
    source_extra: str = "",
    fetch_extra: str = "",
    robots: bool = False,
    resolver: AbstractResolver | None = None,
) -> tuple[RunResult, CollectorRegistry]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""\
state_dir: {tmp_path}/var
fetch: {{politeness_delay: 0s, robots: {str(robots).lower()}, retry: {{attempts: 1}}{fetch_extra}}}
sources:
  - name: s
    every: 1h
    url: "{url}"
    items: div.quote
    fields: {{text: span.text::text}}{source_extra}
""")
    registry = CollectorRegistry()
    [result] = asyncio.run(Service(load_config(cfg), registry, resolver=resolver).once())
    return result, registry


def blocked(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value(
        "crawler_fetch_errors_total", {"source": "s", "error_kind": "blocked_address"}
    )


def test_a_redirect_to_an_unwritten_private_address_is_refused(
    tmp_path: Path, lan: Site, caplog: pytest.LogCaptureFixture
) -> None:
    with own_site({"/away": f"{lan.base}/page/0"}) as site:
        redirect_case(tmp_path, site, lan, caplog)


def redirect_case(tmp_path: Path, site: Site, lan: Site, caplog: pytest.LogCaptureFixture) -> None:
    result, registry = crawl(tmp_path, f"{site.base}/away")
    assert result.status == "failure" and result.errors == {"blocked_address": 1}
    assert blocked(registry) == 1
    assert sum(lan.hits.values()) == 0  # refused before connecting
    assert site.hits["/away"] == 1  # the written address itself was fetched
    messages = " ".join(r.getMessage() + str(getattr(r, "error", "")) for r in caplog.records)
    assert "127.0.0.2" in messages and "allow_private: true" in messages

    result, registry = crawl(
        tmp_path, f"{site.base}/away", source_extra="\n    allow_private: true"
    )
    assert result.status == "success", result
    assert lan.hits["/page/0"] == 1 and blocked(registry) is None


def test_a_robots_txt_redirect_to_a_private_address_is_refused(tmp_path: Path, lan: Site) -> None:
    with own_site({"/robots.txt": f"{lan.base}/robots.txt"}) as site:
        robots_case(tmp_path, site, lan)


def robots_case(tmp_path: Path, site: Site, lan: Site) -> None:
    result, registry = crawl(tmp_path, f"{site.base}/page/0", robots=True)
    assert result.status == "failure" and result.errors == {"blocked_address": 1}
    assert blocked(registry) == 1
    assert sum(lan.hits.values()) == 0
    assert site.hits["/page/0"] == 0  # robots.txt could not be read: the page is not fetched

    result, _ = crawl(
        tmp_path, f"{site.base}/page/0", robots=True, source_extra="\n    allow_private: true"
    )
    assert result.status == "success", result
    assert lan.hits["/robots.txt"] == 1 and site.hits["/page/0"] == 1


def test_a_configured_hostname_resolving_to_a_private_address_is_refused(
    tmp_path: Path, site: Site
) -> None:
    resolver = StaticResolver({"nas.lan.test": "127.0.0.1"})
    url = f"http://nas.lan.test:{site.port}/page/0"
    result, registry = crawl(tmp_path, url, resolver=resolver)
    assert resolver.asked == ["nas.lan.test"]  # resolved by the test, never by the machine's DNS
    assert result.status == "failure" and result.errors == {"blocked_address": 1}
    assert blocked(registry) == 1
    assert site.hits["/page/0"] == 0

    result, _ = crawl(tmp_path, url, resolver=resolver, source_extra="\n    allow_private: true")
    assert result.status == "success", result
    assert site.hits["/page/0"] == 1

    # The global allow-list does the same for every source.
    result, _ = crawl(
        tmp_path, url, resolver=resolver, fetch_extra=", allow_private_networks: [127.0.0.0/8]"
    )
    assert result.status == "success", result
    assert site.hits["/page/0"] == 2


def test_every_answer_for_a_name_is_checked(tmp_path: Path, site: Site) -> None:
    """A name with several answers: each is judged, none non-public is connected to."""

    class TwoAnswers(StaticResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            private = await super().resolve(host, port, family)
            other = dict(private[0], host="192.0.2.1")  # TEST-NET-1: reserved, refused too
            return [*private, other]  # type: ignore[list-item]

    resolver = TwoAnswers({"mixed.lan.test": "127.0.0.1"})
    result, _ = crawl(tmp_path, f"http://mixed.lan.test:{site.port}/page/0", resolver=resolver)
    assert result.errors == {"blocked_address": 1}
    assert site.hits["/page/0"] == 0


def test_a_followed_link_to_a_private_address_is_refused(tmp_path: Path, lan: Site) -> None:
    listing = f"<html><body><a href='{lan.base}/page/0'>the router</a></body></html>"
    with own_site({}, {"/list": listing}) as site:
        follow = "\n    follow: {links: 'a::attr(href)', same_host: false, max_per_run: 5}"
        _, registry = crawl(tmp_path, f"{site.base}/list", source_extra=follow)
        assert site.hits["/list"] == 1
        assert blocked(registry) == 1
        assert sum(lan.hits.values()) == 0

        again = tmp_path / "again"  # a fresh state_dir: the first run recorded the link
        again.mkdir()
        result, registry = crawl(
            again,
            f"{site.base}/list",
            source_extra=follow + "\n    allow_private: true",
        )
        assert blocked(registry) is None
        assert lan.hits["/page/0"] == 1, result


def test_an_https_to_http_redirect_is_refused_unless_allowed(tmp_path: Path, site: Site) -> None:
    """A real HTTPS site (its certificate trusted through SSL_CERT_FILE, in a `crawler once`
    process) redirecting to plain HTTP: a `redirect` failure, the HTTP page never asked for."""
    cert, key = self_signed_certificate(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def serve(port: int, ready: Any, stop: Any) -> None:
        app = web.Application()
        app.router.add_get("/start", redirect_to(f"{site.base}/page/0"))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        await runner.cleanup()

    port, ready, stop = free_port(), threading.Event(), threading.Event()
    thread = threading.Thread(target=asyncio.run, args=(serve(port, ready, stop),), daemon=True)
    thread.start()
    assert ready.wait(10)
    env = {**os.environ, "SSL_CERT_FILE": str(cert)}
    try:
        for extra, code in (("", 1), ("\n    allow_https_to_http: true", 0)):
            cfg = tmp_path / "c.yaml"
            cfg.write_text(f"""\
state_dir: {tmp_path}/var
fetch: {{politeness_delay: 0s, robots: false, retry: {{attempts: 1}}, conditional_get: false}}
sources:
  - name: s
    every: 1h
    url: "https://127.0.0.1:{port}/start"
    items: div.quote
    fields: {{text: span.text::text}}{extra}
""")
            before = site.hits["/page/0"]
            proc = run_cli("once", "-c", str(cfg), env=env)
            assert proc.returncode == code, proc.stdout + proc.stderr
            if code:
                assert "allow_https_to_http" in proc.stdout + proc.stderr
                assert site.hits["/page/0"] == before  # the plain-HTTP page was never asked for
            else:
                assert site.hits["/page/0"] == before + 1
    finally:
        stop.set()
        thread.join(10)
