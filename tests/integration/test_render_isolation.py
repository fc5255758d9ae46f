"""What a rendered page could reach around the tab's interception (issue 26): WebRTC's UDP,
dedicated and shared workers, frames of other sites. With a real Chromium (tests/chromium.py's
flags, which are the crawler's own) and real sites on 127.0.0.1: a page that tries them all
reaches nothing but through the crawler's fetch layer, which the sites see by its User-Agent."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from crawler.config.root import load_config
from crawler.service import Service
from tests.chromium import Chromium
from tests.render_site import LanHost
from tests.site import Site

UA = "isolation-test/1.0"
# How long a STUN packet gets to arrive after the render: it would be sent within the render
# (the page waits for ICE gathering to end before it says it is ready), so this is slack only.
UDP_WAIT = 2.0

PROBE = """<!doctype html>
<html><head><meta charset="utf-8"></head><body>
<iframe src="%(other)s/frame"></iframe>
<script>
const said = [];
function api(name) {
  const frame = document.createElement("iframe");
  document.body.appendChild(frame);
  const inFrame = name in frame.contentWindow;
  frame.remove();
  said.push(name + ":" + ((name in window || inFrame) ? "present" : "absent"));
}
["Worker", "SharedWorker", "RTCPeerConnection", "WebTransport"].forEach(api);
const targets = "?other=%(other)s&lan=%(lan)s";
try { new Worker("/worker.js" + targets); } catch (e) {}
try { new SharedWorker("/worker.js" + targets); } catch (e) {}
async function stun() {
  if (typeof window.RTCPeerConnection !== "function") return;
  const pc = new RTCPeerConnection({iceServers: [{urls: "stun:127.0.0.1:%(udp)d"}]});
  pc.createDataChannel("x");
  const done = new Promise((resolve) => {
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
    setTimeout(resolve, 3000);
  });
  await pc.setLocalDescription(await pc.createOffer());
  await done;
}
const framed = new Promise((resolve) => window.addEventListener("message", (e) => {
  said.push(e.data);
  resolve();
}));
const loaded = new Promise((resolve) => window.addEventListener("load", resolve));
Promise.all([stun().catch(() => {}), loaded, framed]).then(() => {
  const p = document.createElement("p");
  p.className = "ready";
  p.textContent = said.join(" ");
  document.body.appendChild(p);
});
</script></body></html>
"""

WORKER = """
const q = new URLSearchParams(location.search);
fetch(q.get("other") + "/data").catch(() => {});
fetch(q.get("lan") + "/secret").catch(() => {});
"""


# The other site's frame says what it found: its scripts run in another site's document.
FRAME = """<!doctype html><script>
const found = ["Worker", "RTCPeerConnection", "WebTransport"].some((name) => name in window);
parent.postMessage("frame:" + (found ? "present" : "absent"), "*");
</script>"""


class ProbeSite(Site):
    """The page under test (`/probe`) and its worker script, on 127.0.0.1."""

    def __init__(self, other: str, lan: str, udp: int) -> None:
        super().__init__()
        self.text = PROBE % {"other": other, "lan": lan, "udp": udp}
        self.app.router.add_get("/probe", self._probe)
        self.app.router.add_get("/worker.js", self._worker)

    async def _probe(self, _: web.Request) -> web.Response:
        return web.Response(text=self.text, content_type="text/html")

    async def _worker(self, _: web.Request) -> web.Response:
        return web.Response(text=WORKER, content_type="application/javascript")


class OtherSite(Site):
    """A second site (127.0.0.3, let through by the test's `allow_private_networks`) that
    records the User-Agent of every request, so a fetch by Chromium itself would show."""

    def __init__(self) -> None:
        super().__init__("127.0.0.3")
        self.agents: list[tuple[str, str]] = []
        self.app.router.add_get("/frame", self._answer)
        self.app.router.add_get("/data", self._answer)

    async def _answer(self, request: web.Request) -> web.Response:
        self.agents.append((request.path, request.headers.get("User-Agent", "")))
        return web.Response(text=FRAME, content_type="text/html")


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


@pytest.fixture
def sites(udp: socket.socket) -> Iterator[tuple[ProbeSite, OtherSite, LanHost]]:
    other, lan = OtherSite().start(), LanHost().start()
    probe = ProbeSite(other.base, lan.base, udp.getsockname()[1]).start()
    yield probe, other, lan
    for s in (probe, other, lan):
        s.stop()


def received(sock: socket.socket, wait: float) -> list[bytes]:
    """Every datagram that reaches `sock` within `wait` seconds."""
    sock.settimeout(wait)
    out = []
    try:
        while True:
            out.append(sock.recv(65536))
    except TimeoutError:
        return out


async def render_probe(
    probe: ProbeSite, chromium: Chromium, write_config: Callable[..., Path]
) -> list[Any]:
    source = {
        "name": "probe",
        "every": "1h",
        "urls": [f"{probe.base}/probe"],
        "render": {"wait_for": "p.ready", "timeout": "20s"},
        "items": "body",
        "fields": {"said": "p.ready::text"},
        "key": ["said"],
    }
    cfg = write_config(
        user_agent=UA,
        browser={"endpoint": chromium.endpoint},
        fetch={"allow_private_networks": ["127.0.0.3/32"]},
        sources=[source],
    )
    return await Service(load_config(cfg), CollectorRegistry()).once()


def said(tmp_path: Path) -> list[str]:
    """What the page said of the APIs it found (the stored records' `said`)."""
    conn = sqlite3.connect(tmp_path / "var" / "crawler.sqlite")
    try:
        rows = conn.execute("SELECT data FROM scraped_data").fetchall()
    finally:
        conn.close()
    return [json.loads(r[0])["said"] for r in rows]


async def test_a_page_gets_no_webrtc_and_no_workers_and_sends_no_udp(
    sites: tuple[ProbeSite, OtherSite, LanHost],
    udp: socket.socket,
    chromium: Chromium,
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    probe, other, lan = sites
    [result] = await render_probe(probe, chromium, write_config)
    assert (result.status, result.records) == ("success", 1)
    # The APIs are gone in the page, in a same-origin frame, and in the other site's frame
    # (in the page's process, so the tab's script reached it).
    assert said(tmp_path) == [
        "Worker:absent SharedWorker:absent RTCPeerConnection:absent WebTransport:absent"
        " frame:absent"
    ]
    # No STUN binding request reached the UDP socket the page's ICE server names.
    assert await asyncio.to_thread(received, udp, UDP_WAIT) == []
    # Nothing reached the other site but through the crawler: its frame, fetched by the
    # crawler (intercepted although another site's), and no worker's fetch at all.
    assert other.agents == [("/frame", UA)]
    assert sum(lan.hits.values()) == 0
