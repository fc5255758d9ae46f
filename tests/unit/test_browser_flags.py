"""The flags that keep a Chromium off every network but the crawler's (issue 26) are the same
for the crawler's local Chromium, the compose `browser` service and the tests' Chromium, so
what tests/integration/test_render_isolation.py shows holds for all three."""

from __future__ import annotations

from pathlib import Path

import yaml

from crawler.render.browser import ISOLATION_FLAGS, LOCAL_FLAGS, WEBRTC_FLAGS
from tests.chromium import FLAGS

ROOT = Path(__file__).resolve().parents[2]
NO_PROXY = ("--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>")
REQUIRED = (*WEBRTC_FLAGS, *ISOLATION_FLAGS, *NO_PROXY, "--disable-quic")


def test_webrtc_udp_and_cross_site_processes_are_off_in_every_chromium() -> None:
    assert "--webrtc-ip-handling-policy=disable_non_proxied_udp" in WEBRTC_FLAGS
    service = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["browser"]
    for name, flags in (
        ("browser.py LOCAL_FLAGS", LOCAL_FLAGS),
        ("tests/chromium.py FLAGS", FLAGS),
        ("compose.yaml browser command", tuple(service["command"])),
    ):
        missing = [flag for flag in REQUIRED if flag not in flags]
        assert missing == [], f"{name} lacks {missing}"
