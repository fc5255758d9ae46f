"""The HTTP side: /metrics, /healthz and /readyz, served from the crawler's own event loop.

/healthz answers whenever the loop turns (a blocked loop is what it detects); /readyz is 200
only when the scheduler runs and records have somewhere to go (store, or spool below its cap).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from crawler.lifecycle import Part
from crawler.metrics import Metrics

Readiness = Callable[[], "tuple[bool, dict[str, object]]"]


def make_app(metrics: Metrics, readiness: Readiness) -> web.Application:
    async def metrics_handler(request: web.Request) -> web.Response:
        ok, _ = readiness()
        metrics.ready.set(1 if ok else 0)
        body = generate_latest(metrics.registry)
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

    app = web.Application()
    app.add_routes(
        [
            web.get("/metrics", metrics_handler),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
        ]
    )
    return app


async def start_server(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner


class HttpServer(Part):
    """/metrics, /healthz and /readyz on `host:port` for as long as the part is open."""

    def __init__(self, metrics: Metrics, readiness: Readiness, host: str, port: int) -> None:
        self.app = make_app(metrics, readiness)
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    async def open(self) -> None:
        self._runner = await start_server(self.app, self.host, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
