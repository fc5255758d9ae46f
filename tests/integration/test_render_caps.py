"""A rendered page's limits (issue 26 item 5): `render.max_requests` caps what one page has
the crawler fetch, and the rendered DOM is held to `fetch.max_response_bytes` like any body."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.chromium import Chromium
from tests.integration.test_render import run_once, sample, shop_source
from tests.render_site import LanHost, ShopSite


@pytest.fixture
def shop() -> Iterator[ShopSite]:
    lan = LanHost().start()
    s = ShopSite(lan=lan).start()
    yield s
    s.stop()
    lan.stop()


async def test_requests_past_max_requests_are_blocked_and_counted(
    shop: ShopSite, chromium: Chromium, write_config: Callable[..., Path]
) -> None:
    """Two requests allowed: the document and its script are fetched, the script's XHR is
    failed in the page as blocked (so no product, and never an image) and counted. `networkidle`,
    not `load`: the XHR is handled after the load event, and a render ending at `load` could
    close the page before the crawler saw it (CI saw blocked 0 once)."""
    source = shop_source(shop, wait="networkidle", max_requests=2)
    source["render"].pop("wait_for")
    source.pop("paginate")
    cfg = write_config(browser={"endpoint": chromium.endpoint}, sources=[source])
    registry = CollectorRegistry()
    [result] = await run_once(cfg, registry)
    assert (result.status, result.records) == ("success", 0)
    assert (shop.hits["/shop"], shop.hits["/app.js"], shop.hits["/api/products"]) == (1, 1, 0)
    assert (
        sample(registry, "crawler_render_requests_total", source="spa_shop", outcome="blocked") == 1
    )


async def test_a_dom_over_the_body_cap_fails_the_page_as_too_large(
    shop: ShopSite, chromium: Chromium, write_config: Callable[..., Path]
) -> None:
    """Every body the page fetches is under 4 KiB; its script grows the DOM past 8 KiB."""
    source = shop_source(shop, "/grow", wait="load")
    source["render"].pop("wait_for")
    source.pop("paginate")
    cfg = write_config(
        browser={"endpoint": chromium.endpoint},
        fetch={"max_response_bytes": 4096},
        sources=[source],
    )
    registry = CollectorRegistry()
    [result] = await run_once(cfg, registry)
    assert (result.status, result.errors) == ("failure", {"too_large": 1})
    assert shop.hits["/grow.js"] == 1
    assert (
        sample(registry, "crawler_fetch_errors_total", source="spa_shop", error_kind="too_large")
        == 1
    )


async def test_a_third_party_requests_failure_is_logged_at_debug(
    shop: ShopSite,
    chromium: Chromium,
    write_config: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The page's XHR to another origin (the LAN host, refused by the netguard) is the page's
    business: DEBUG, never WARNING, however many a page makes."""
    caplog.set_level(logging.DEBUG, logger="crawler.fetch")
    source = shop_source(shop, "/lan")
    source.pop("paginate")
    cfg = write_config(browser={"endpoint": chromium.endpoint}, sources=[source])
    [result] = await run_once(cfg, CollectorRegistry())
    assert result.status == "success"
    failed = [r for r in caplog.records if r.getMessage() == "fetch attempt failed"]
    assert [(r.levelno, r.url.startswith("http://127.0.0.2")) for r in failed] == [
        (logging.DEBUG, True)
    ]
