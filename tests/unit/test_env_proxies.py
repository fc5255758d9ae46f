"""The standard proxy variables, read once (crawler.request.EnvProxies)."""

from __future__ import annotations

import pytest

from crawler.fetch.request import EnvProxies

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_no_variables_no_proxy() -> None:
    env = EnvProxies()
    assert not env
    assert env.for_url("http://example.org/a") is None


def test_scheme_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.lan:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://tls-proxy.lan:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example,.corp.example")
    env = EnvProxies()
    assert env
    assert env.for_url("http://example.org/a") == "http://proxy.lan:3128"
    assert env.for_url("https://example.org/a") == "http://tls-proxy.lan:3128"
    assert env.for_url("http://internal.example/x") is None
    assert env.for_url("http://a.corp.example:8080/x") is None
    # Read once: a change of the variables after start-up does not apply.
    monkeypatch.setenv("HTTP_PROXY", "http://other:1")
    assert env.for_url("http://example.org/b") == "http://proxy.lan:3128"
    assert env.for_url("http://example.net/") == "http://proxy.lan:3128"


def test_lower_case_wins_and_all_proxy_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://upper:1")
    monkeypatch.setenv("http_proxy", "http://lower:2")
    monkeypatch.setenv("ALL_PROXY", "http://all:3")
    env = EnvProxies()
    assert env.for_url("http://example.org/") == "http://lower:2"
    assert env.for_url("https://example.org/") is None  # aiohttp never used ALL_PROXY either


def test_remembered_hosts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.lan:3128")
    env = EnvProxies()
    for i in range(2000):
        assert env.for_url(f"http://host{i}.example/") == "http://proxy.lan:3128"
    assert len(env._known) <= EnvProxies._MAX_HOSTS
