"""TLS is verified: a certificate nobody vouches for costs one failed fetch of kind `tls`."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from crawler.config.root import load_config
from crawler.service import Service
from tests.helpers import free_port, self_signed_certificate


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no authority signed."""
    return self_signed_certificate(tmp_path)


async def test_self_signed_certificate_is_refused(tmp_path: Path, self_signed: tuple[Path, Path]):
    cert, key = self_signed
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    hits = 0

    async def page(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(
            text="<div class='quote'><span class='text'>x</span></div>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    try:
        path = tmp_path / "c.yaml"
        path.write_text(f"""\
state_dir: {tmp_path}/var
fetch: {{politeness_delay: 0s, robots: false, retry: {{attempts: 1}}}}
sources:
  - name: s
    every: 1h
    url: "https://127.0.0.1:{port}/"
    items: div.quote
    fields: {{text: span.text::text}}
""")
        registry = CollectorRegistry()
        [result] = await Service(load_config(path), registry).once()
        await asyncio.sleep(0)
    finally:
        await runner.cleanup()
    assert result.status == "failure" and result.errors == {"tls": 1}
    assert hits == 0  # the handshake failed: no request was ever sent
    assert (
        registry.get_sample_value(
            "crawler_fetch_errors_total", {"source": "s", "error_kind": "tls"}
        )
        == 1
    )
