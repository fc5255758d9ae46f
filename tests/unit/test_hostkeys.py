"""`HostKeys`: which hosts keep per-host entries of their own (crawler/fetch/hostkeys.py)."""

from __future__ import annotations

from crawler.fetch.hostkeys import OTHER, HostKeys


def test_a_crawls_own_hosts_and_its_redirects_are_never_capped() -> None:
    keys = HostKeys(cap=1)
    own = frozenset({"shop.example"})
    assert keys.key("cdn.example", own, page=True) == "cdn.example"
    assert keys.key("ads.example", own, page=True) == OTHER
    assert keys.key("cdn.example", own, page=True) == "cdn.example"  # kept, not re-counted
    assert keys.key("shop.example", own, page=True) == "shop.example"
    assert keys.key("elsewhere.example", own, page=False) == "elsewhere.example"


def test_a_sources_hosts_are_worked_out_once() -> None:
    """Asked on every request: a source listing 1,000 URLs must not split them all each time
    (b3e8bed did, and the benchmark's crawl took three times the CPU)."""
    from crawler.config.sources import SourceConfig

    urls = [f"http://127.0.0.1:{8000 + i % 3}/p/{i}" for i in range(1000)]
    source = SourceConfig(name="s", every=60.0, urls=urls)
    assert source.hosts == {"127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"}
    assert source.hosts is source.hosts
