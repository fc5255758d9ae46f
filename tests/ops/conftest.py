"""Fixtures shared by the ops tier's end-to-end tests."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.ops.test_alerting_e2e import SlackStandIn


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    """A stand-in for Slack's incoming webhook on 127.0.0.1; its payloads printed on failure."""
    stand_in = SlackStandIn()
    stand_in.server.start()
    yield stand_in
    stand_in.server.stop()
    print("--- Slack payloads ---")  # shown by pytest only when the test fails
    for payload in stand_in.payloads:
        print(json.dumps(payload, indent=1))
