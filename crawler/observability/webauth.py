"""Basic auth and TLS for the crawler's own endpoints, in exporter-toolkit's web-config shape.

`metrics.basic_auth` names a file of `user: bcrypt-hash` pairs under `basic_auth_users` -- the
file node_exporter's `--web.config.file` reads, so one file serves both on the Pi (scripts/
setup-secrets makes it). `metrics.tls` has exporter-toolkit's `cert_file` and `key_file`.

bcrypt is slow on purpose (about a second at cost 12-14 on a Pi 3), so it never runs on the event
loop: checks go to a thread, one at a time (a stream of wrong passwords costs one core, not the
loop), and a successful check is remembered by a keyed hash of the credentials, so Prometheus'
scrape every 30 s costs one bcrypt per process lifetime, as exporter-toolkit does. /healthz
and /readyz stay open: they say only that the event loop turns and whether the crawler is ready
(scheduler, store, spool depth; nothing crawled, no secret), and probes ask them without
credentials: deploy/release's poll after an upgrade (under auth it got 401 and rolled every
upgrade back), Kubernetes probes, as exporter-toolkit's users expect.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

# Paths that answer without a password (see the module docstring).
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_CACHE_MAX = 64


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes, off the event loop, with a cache."""

    def __init__(self, users: Mapping[str, str]) -> None:
        # Imported here: only a crawler with `metrics.basic_auth` needs it (~0.5 MiB of RSS).
        import bcrypt

        self._checkpw = bcrypt.checkpw
        self.users = {u: h.encode() for u, h in users.items()}
        self._key = os.urandom(32)  # the cache holds keyed hashes, never passwords
        self._good: dict[bytes, None] = {}
        self._pending: dict[bytes, asyncio.Task[bool]] = {}
        self._one_at_a_time = asyncio.Semaphore(1)

    async def allows(self, header: str | None) -> bool:
        credentials = _parse(header)
        if credentials is None:
            return False
        user, password = credentials
        token = hmac.new(self._key, user + b"\0" + password, hashlib.sha256).digest()
        if token in self._good:
            return True
        hashed = self.users.get(user.decode("utf-8", "replace"))
        if hashed is None:
            return False
        # One check per credentials at a time, finished even when the request that started it
        # is gone: a slow Pi may need longer than Prometheus' scrape timeout for one bcrypt, and
        # the next scrape must find the answer cached rather than start over.
        task = self._pending.get(token)
        if task is None:
            task = asyncio.create_task(self._check(token, password, hashed))
            self._pending[token] = task
            task.add_done_callback(lambda _: self._pending.pop(token, None))
        return await asyncio.shield(task)

    async def _check(self, token: bytes, password: bytes, hashed: bytes) -> bool:
        async with self._one_at_a_time:
            ok = await asyncio.to_thread(self._checkpw, password, hashed)
        if ok:
            if len(self._good) >= _CACHE_MAX:
                self._good.pop(next(iter(self._good)))
            self._good[token] = None
        return ok

    def middleware(self, status_token: str | None = None) -> Callable[..., Awaitable[Any]]:
        """The aiohttp middleware; `status_token` (crawler.observability.pidfile) also opens
        /status to the local `crawler status`, which has no password to send (the users file
        holds only hashes)."""
        from aiohttp import web

        bearer = f"Bearer {status_token}".encode() if status_token else None

        @web.middleware
        async def check(request: web.Request, handler: Any) -> Any:
            header = request.headers.get("Authorization")
            if (
                request.path in OPEN_PATHS
                or (
                    bearer is not None
                    and request.path == "/status"
                    and header is not None
                    and hmac.compare_digest(header.encode(), bearer)
                )
                or await self.allows(header)
            ):
                return await handler(request)
            return web.Response(
                status=401,
                text="401 Unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="pi-crawler"'},
            )

        return check


def _parse(header: str | None) -> tuple[bytes, bytes] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    return (user, password) if sep else None
