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
