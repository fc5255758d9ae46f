"""A rendered page's third-party hosts (issue 26, item 4): however many a page loads from, the
fetch layer's per-host maps (circuit breakers and their `crawler_circuit_state` series, the
politeness pacer, the concurrency semaphores) hold at most `HostKeys.cap` of them, the rest
under one `other` key, and every request is still fetched. Real sites on 127.0.0.3 (one
"host" per port, as a netloc is a host here), the crawler's real `Fetcher`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from crawler.config.root import load_config
from crawler.fetch.client import Fetcher
from crawler.fetch.hostkeys import OTHER, HostKeys
from crawler.fetch.request import Prepared
from crawler.observability.metrics import Metrics
from tests.helpers import write_config
from tests.site import Site

CAP = 2
THIRD_PARTY = 5


@pytest.fixture
def others() -> Iterator[list[Site]]:
    sites = [Site("127.0.0.3").start() for _ in range(THIRD_PARTY)]
    yield sites
    for s in sites:
        s.stop()


def circuit_hosts(registry: CollectorRegistry) -> set[str]:
    return {
        sample.labels["host"]
        for metric in registry.collect()
        if metric.name == "crawler_circuit_state"
        for sample in metric.samples
    }


async def test_third_party_hosts_past_the_cap_share_one_key_and_are_all_fetched(
    site: Site, others: list[Site], tmp_path: Path
) -> None:
    # A plain source: `fetch_for_page` is what a render source's pages call (its browser aside).
    source = {"name": "shop", "urls": [f"{site.base}/page/1"], "every": "1h"}
    cfg = load_config(
        write_config(
            tmp_path,
            fetch={"allow_private_networks": ["127.0.0.3/32"]},
            sources=[{**source, "items": "div.quote", "fields": {"t": "span.text::text"}}],
        )
    )
    registry = CollectorRegistry()
    fetcher = Fetcher(cfg, Metrics(registry))
    fetcher.host_keys = HostKeys(cap=CAP)
    src = cfg.sources[0]
    asked = Prepared(method="GET", headers={}, data=None)
    async with fetcher:
        fetcher.begin_run(src)
        await fetcher.fetch_for_page(src, src.urls[0], asked, site.base, document=True)
        for other in others:
            page = await fetcher.fetch_for_page(
                src, f"{other.base}/page/2", asked, site.base, document=False
            )
            assert page.status == 200
    assert [s.hits["/page/2"] for s in others] == [1] * THIRD_PARTY
    own = {f"127.0.0.1:{site.port}"}
    kept = {f"127.0.0.3:{s.port}" for s in others[:CAP]}
    assert circuit_hosts(registry) == own | kept | {OTHER}
    assert set(fetcher._per_host) == own | kept | {OTHER}
    assert set(fetcher.pacer._next) == own | kept | {OTHER}
