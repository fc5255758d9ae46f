"""The browser reached by a name, as the compose crawler reaches the stack's `browser` service
(`browser: {endpoint: "http://browser:9222"}`, docs/stack.md): a real Chromium on 127.0.0.1,
the name `browser` resolved to it by the test's own resolver (nothing from DNS).

Chromium refuses every DevTools request whose Host is not an IP address or `localhost`; the
CDP client says `localhost` to a plain http/ws endpoint named otherwise, and leaves the Host of
an https/wss one (the stack's proxy on port 9222, tests/ops/test_proxy.py) to the proxy.
"""

from __future__ import annotations

import asyncio

import aiohttp

from crawler.render.cdp import Connection, host_header
from tests.chromium import Chromium
from tests.site import StaticResolver


def by_name() -> aiohttp.ClientSession:
    resolver = StaticResolver({"browser": "127.0.0.1"})
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver))


def test_chromium_refuses_a_named_host_by_itself(chromium: Chromium) -> None:
    """The control: asked by name with the name as Host, Chromium answers 500, not the page."""

    async def ask() -> tuple[int, str]:
        url = f"http://browser:{chromium.port}/json/version"
        async with by_name() as session, session.get(url) as resp:
            return resp.status, await resp.text()

    status, text = asyncio.run(ask())
    assert status == 500 and "not an IP address or localhost" in text


def test_the_cdp_client_drives_a_browser_reached_by_name(chromium: Chromium) -> None:
    async def drive() -> str:
        async with by_name() as session:
            conn = await Connection.open(session, f"http://browser:{chromium.port}", {}, 10)
            try:
                version = await conn.call("Browser.getVersion", timeout=10)
            finally:
                await conn.close()
            return str(version["product"])

    assert "Chrome/" in asyncio.run(drive())


def test_host_header_only_for_plain_endpoints_named_by_a_name() -> None:
    assert host_header("http://browser:9222") == {"Host": "localhost:9222"}
    assert host_header("ws://browser:9222/devtools/browser/x") == {"Host": "localhost:9222"}
    # Chromium's own acceptable hosts, and a TLS proxy that routes by the name it is given.
    for endpoint in (
        "http://127.0.0.1:9222",
        "http://[::1]:9222",
        "http://localhost:9222",
        "https://nas.local:9222",
        "wss://nas.local:9222/devtools/browser/x",
    ):
        assert host_header(endpoint) == {}, endpoint
