"""Rendering (issue 26) with a real Chromium against a single-page-app shop on 127.0.0.1
whose products exist only after its script runs: every request the page makes goes through the
crawler's fetch layer, and nothing a page does can leak, hang or reach the LAN."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from crawler.config.root import load_config
from crawler.render.cdp import Connection
from crawler.service import Service
from tests.chromium import Chromium, chromium_path, processes, zombies
from tests.crawler_proc import run_cli
from tests.helpers import free_port
from tests.render_site import PAGES, PER_PAGE, PRODUCTS, LanHost, ShopSite


@pytest.fixture
def lan() -> Iterator[LanHost]:
    host = LanHost().start()
    yield host
    host.stop()


@pytest.fixture
def shop(lan: LanHost) -> Iterator[ShopSite]:
    s = ShopSite(lan=lan).start()
    yield s
    s.stop()


def shop_source(shop: ShopSite, path: str = "/shop", **render: Any) -> dict[str, Any]:
    return {
        "name": "spa_shop",
        "every": "1h",
        "urls": [f"{shop.base}{path}"],
        "render": {"wait_for": "p.ready", "timeout": "20s", **render},
        "items": "div.product",
        "fields": {
            "id": "xpath:./@data-id",
            "name": "h2::text",
            "price": {"selector": ".price::text", "type": "decimal"},
        },
        "key": ["id"],
        "paginate": {"next": "a.next::attr(href)", "max_pages": 10},
    }


def stored(tmp_path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(tmp_path / "var" / "crawler.sqlite")
    try:
        rows = conn.execute("SELECT data FROM scraped_data ORDER BY key").fetchall()
    finally:
        conn.close()
    return [json.loads(r[0]) for r in rows]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def run_once(cfg: Path, registry: CollectorRegistry | None = None) -> list[Any]:
    service = Service(load_config(cfg), registry or CollectorRegistry())
    return await service.once()


async def run_and_ask_browser(
    cfg: Path, registry: CollectorRegistry
) -> tuple[Any, tuple[float, object]]:
    """One run of the first source; then, the service still open, what `crawler_browser_up`
    and /readyz's `browser` check say."""
    service = Service(load_config(cfg), registry)
    async with service.opened() as pipeline:
        result = await pipeline.run_source(pipeline.config.sources[0])
        said = (sample(registry, "crawler_browser_up"), service.readiness()[1]["browser"])
    return result, said


async def test_records_exactly_as_the_sites_data_and_images_never_requested(
    shop: ShopSite, chromium: Chromium, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config(browser={"endpoint": chromium.endpoint}, sources=[shop_source(shop)])
    registry = CollectorRegistry()
    result, said = await run_and_ask_browser(cfg, registry)
    # The browser is reachable, and said so by the gauge and /readyz's checks.
    assert said == (1.0, "up")
    assert (result.status, result.pages, result.records) == ("success", PAGES, len(PRODUCTS))
    assert [
        {"id": r["id"], "name": r["name"], "price": Decimal(str(r["price"]))}
        for r in stored(tmp_path)
    ] == PRODUCTS
    # Three pages of one shell: the chain went on by the script-built "next" link, not stopped
    # by the repeated-body rule, because the rendered DOMs differ.
    assert shop.hits["/shop"] == PAGES and shop.hits["/api/products"] == PAGES
    # Images were failed in the page with no request made; each one counted as blocked.
    assert not [p for p in shop.hits if p.startswith("/img/")]
    assert sample(
        registry, "crawler_render_requests_total", source="spa_shop", outcome="blocked"
    ) == len(PRODUCTS)
    fetched = sample(
        registry, "crawler_render_requests_total", source="spa_shop", outcome="fetched"
    )
    assert fetched == 3 * PAGES  # document, script and XHR per page
    assert sample(registry, "crawler_render_seconds_count", source="spa_shop") == PAGES
    # The page's requests went through the fetch layer: its request counter saw them.
    assert (
        sample(
            registry,
            "crawler_requests_total",
            source="spa_shop",
            host=f"127.0.0.1:{shop.port}",
            status_class="2xx",
        )
        == 3 * PAGES
    )


async def test_unchanged_rendered_pages_are_skipped_changed_ones_extracted(
    shop: ShopSite, chromium: Chromium, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config(browser={"endpoint": chromium.endpoint}, sources=[shop_source(shop)])
    (first,) = await run_once(cfg)
    (second,) = await run_once(cfg)
    # The shell is the same bytes on every run; the rendered DOM decides: unchanged.
    assert (first.records, second.not_modified, second.records) == (len(PRODUCTS), PAGES, 0)
    shop.version += 1
    (third,) = await run_once(cfg)
    assert (third.records, third.not_modified) == (len(PRODUCTS), 0)
    assert {r["name"] for r in stored(tmp_path)} == {f"{p['name']} v1" for p in PRODUCTS}


async def test_the_lan_host_is_never_reached_not_by_fetch_nor_websocket(
    shop: ShopSite,
    lan: LanHost,
    chromium: Chromium,
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    source = shop_source(shop, "/lan")
    source.pop("paginate")
    cfg = write_config(browser={"endpoint": chromium.endpoint}, sources=[source])
    registry = CollectorRegistry()
    [result] = await run_once(cfg, registry)
    assert (result.status, result.records) == ("success", PER_PAGE)
    assert sum(lan.hits.values()) == 0
    # The XHR to the LAN (refused by the netguard) and the WebSocket (blocked in the page).
    assert (
        sample(registry, "crawler_render_requests_total", source="spa_shop", outcome="refused") == 2
    )


async def test_a_redirect_is_handed_to_the_page_and_relative_urls_resolve(
    shop: ShopSite, chromium: Chromium, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    source = shop_source(shop, "/hop")
    source.pop("paginate")
    cfg = write_config(browser={"endpoint": chromium.endpoint}, sources=[source])
    [result] = await run_once(cfg)
    # /hop → shop?page=2 (a relative Location), whose script read page 2 of the data.
    assert (result.status, result.records) == ("success", PER_PAGE)
    assert [r["id"] for r in stored(tmp_path)] == [
        p["id"] for p in PRODUCTS[PER_PAGE : 2 * PER_PAGE]
    ]
    assert shop.hits["/hop"] == 1


async def test_a_page_that_never_settles_fails_as_render_timeout_and_its_context_closes(
    shop: ShopSite, chromium: Chromium, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    source = shop_source(shop, "/never", wait_for=None, wait="networkidle", timeout="2s")
    source.pop("paginate")
    source["urls"].append(f"{shop.base}/shop")  # the run's other page still renders
    source["render"].pop("wait_for")
    # One page at a time: the hung page's endless requests hold the host's fetch slots (as
    # politeness wants) until its render is given up.
    cfg = write_config(
        browser={"endpoint": chromium.endpoint}, fetch={"concurrency": 1}, sources=[source]
    )
    registry = CollectorRegistry()
    service = Service(load_config(cfg), registry)
    async with service.opened() as pipeline:
        started = time.monotonic()
        result = await pipeline.run_source(pipeline.config.sources[0])
        took = time.monotonic() - started
        # The run is over, the crawler still connected: its tabs and its context are gone.
        assert [t["url"] for t in chromium.targets()] == ["about:blank"]
        assert await browser_contexts(chromium) == []
    assert result.errors == {"render_timeout": 1}
    assert (result.pages, result.records) == (1, PER_PAGE)
    assert took < 15  # 2 s for the page that never settles, not its endless requests
    assert (
        sample(
            registry, "crawler_fetch_errors_total", source="spa_shop", error_kind="render_timeout"
        )
        == 1
    )


async def browser_contexts(chromium: Chromium) -> list[str]:
    """The browser contexts the browser holds, asked over CDP (`Target.getBrowserContexts`)."""
    async with aiohttp.ClientSession() as http:
        conn = await Connection.open(http, chromium.endpoint, {}, 10)
        try:
            answer = await conn.call("Target.getBrowserContexts", timeout=10)
        finally:
            await conn.close()
    return list(answer["browserContextIds"])


async def test_service_workers_are_refused(
    shop: ShopSite, chromium: Chromium, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    source = shop_source(shop, "/worker", wait_for="p.sw")
    source.pop("paginate")
    source.update(items="body", fields={"sw": "p.sw::text"}, key=["sw"])
    cfg = write_config(browser={"endpoint": chromium.endpoint}, sources=[source])
    [result] = await run_once(cfg)
    assert result.status == "success"
    assert [r["sw"] for r in stored(tmp_path)] == ["absent"]
    assert shop.hits["/sw.js"] == 0


async def test_a_browser_killed_mid_run_costs_counted_failures_and_the_next_run_renders(
    shop: ShopSite, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """A local Chromium (`executable`), killed while a run renders: the pages rendering then
    fail as `browser`; the crawler starts a new one; the next run renders every page."""
    shop.delay = 1.0  # each XHR takes a second: the kill lands mid-render
    source = shop_source(shop)
    source.pop("paginate")
    source["urls"] = [f"{shop.base}/shop?page={i}" for i in (1, 2, 3)]
    cfg = write_config(
        browser={"executable": chromium_path(), "max_pages": 1},
        fetch={"concurrency": 1},
        sources=[source],
    )
    service = Service(load_config(cfg), CollectorRegistry())
    async with service.opened() as pipeline:
        browser = pipeline.browser
        assert browser is not None
        run = asyncio.create_task(pipeline.run_source(pipeline.config.sources[0]))
        # Another thread's counter and another process's state: polled.
        while not (browser.local and browser.local.running and shop.hits["/api/products"]):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        first_pid = browser.local.proc.pid
        tree = processes(first_pid)

        os.killpg(first_pid, signal.SIGKILL)
        result = await run
        assert result.errors.get("browser", 0) >= 1
        assert result.failed_pages + result.pages == 3
        shop.delay = 0.0
        again = await pipeline.run_source(pipeline.config.sources[0])
        # Every page rendered again (the two rendered before the kill unchanged since).
        assert (again.status, again.errors, again.failed_pages) == ("success", {}, 0)
        assert again.pages + again.not_modified == 3
        assert browser.local.proc.pid != first_pid
    # Stopped with the service: the new browser's whole process group is gone and reaped, and
    # so is every process of the killed one. (Its crash handlers leave its group and may exit
    # after the restart, on a loaded machine well after: they are reaped at the next start or
    # stop, not at once — checked here, after the stop, rather than racing them.)
    assert browser.local.proc is None
    assert zombies(tree) == []


def test_preview_renders_and_says_what_it_took(
    shop: ShopSite, chromium: Chromium, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config(browser={"endpoint": chromium.endpoint}, sources=[shop_source(shop)])
    out = run_cli("preview", "-c", str(cfg), "spa_shop")
    assert out.returncode == 0, out.stderr
    assert "Product 1" in out.stdout and "Product 4" in out.stdout
    assert "rendered in" in out.stdout
    assert f"blocked: {PER_PAGE} ({PER_PAGE} image)" in out.stdout
    assert not (tmp_path / "var" / "crawler.sqlite").exists()


async def test_an_unreachable_browser_costs_counted_failures_and_is_said(
    shop: ShopSite, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    source = shop_source(shop)
    source.pop("paginate")
    source["urls"] = [f"{shop.base}/shop?page={i}" for i in (1, 2)]
    # Nothing listens there: every connect is refused.
    cfg = write_config(browser={"endpoint": f"http://127.0.0.1:{free_port()}"}, sources=[source])
    registry = CollectorRegistry()
    result, said = await run_and_ask_browser(cfg, registry)
    assert said == (0.0, "down")
    assert (result.status, result.errors) == ("failure", {"browser": 2})
    assert (
        sample(registry, "crawler_fetch_errors_total", source="spa_shop", error_kind="browser") == 2
    )
    assert shop.hits["/shop"] == 0  # no page is fetched for a browser that is not there
