"""The HTTP side: /metrics, /healthz, /readyz and /status, served from the crawler's own loop.

/healthz answers whenever the loop turns (a blocked loop is what it detects); /readyz is 200
only when the scheduler runs and records have somewhere to go (store, or spool below its cap);
/status is every source's state as JSON (crawler.run.status), what `crawler status` shows.
With `metrics.basic_auth` and `metrics.tls` the endpoints ask for a password and speak HTTPS
(crawler.webauth).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from crawler.config.metrics import MetricsConfig
from crawler.config.web import server_ssl_context
from crawler.lifecycle import Part
from crawler.observability.exposition import Exposition
from crawler.observability.metrics import Metrics
from crawler.observability.webauth import BasicAuth

Readiness = Callable[[], "tuple[bool, dict[str, object]]"]
Status = Callable[[], Awaitable[dict[str, Any]]]


def make_app(
    metrics: Metrics,
    readiness: Readiness,
    config: MetricsConfig | None = None,
    status: Status | None = None,
    status_token: str | None = None,
) -> web.Application:
    # Each series' text but its value is rendered once, on its first scrape (crawler.exposition).
    exposition = Exposition(metrics.registry)

    async def metrics_handler(request: web.Request) -> web.Response:
        ok, _ = readiness()
        metrics.ready.set(1 if ok else 0)
        body = exposition.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        ok, detail = readiness()
        metrics.ready.set(1 if ok else 0)
        return web.Response(
            status=200 if ok else 503,
            content_type="application/json",
            text=json.dumps({"ready": ok, **detail}) + "\n",
        )

    async def status_handler(request: web.Request) -> web.Response:
        assert status is not None
        return web.json_response(await status())

    middlewares = []
    if config is not None and config.basic_auth:
        middlewares.append(BasicAuth(dict(config.basic_auth)).middleware(status_token))
    app = web.Application(middlewares=middlewares)
    app.add_routes(
        [
            web.get("/metrics", metrics_handler),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
        ]
    )
    if status is not None:
        app.add_routes([web.get("/status", status_handler)])
    return app


async def start_server(
    app: web.Application, host: str, port: int, config: MetricsConfig | None = None
) -> web.AppRunner:
    tls = config.tls if config is not None else None
    ssl_context = server_ssl_context(tls.cert_file, tls.key_file) if tls is not None else None
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
    await site.start()
    return runner


class HttpServer(Part):
    """/metrics, /healthz, /readyz and /status on `host:port` while the part is open."""

    def __init__(
        self,
        metrics: Metrics,
        readiness: Readiness,
        config: MetricsConfig,
        status: Status | None = None,
        status_token: str | None = None,
    ) -> None:
        self.app = make_app(metrics, readiness, config, status, status_token)
        self.config = config
        self._runner: web.AppRunner | None = None

    async def open(self) -> None:
        c = self.config
        self._runner = await start_server(self.app, c.host, c.port, c)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
