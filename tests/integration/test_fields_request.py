"""Issue 12 end to end against a local shop: typed and cleaned fields from HTML, JSON-LD and
`__NEXT_DATA__`; a required field missing (dropped, counted, logged once); a value that does not
convert; a POST JSON API behind a bearer token and a header file rotated between runs, whose
secrets never reach logs, /metrics or crawler_jobs; history rows per change."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.crawler_proc import CrawlerProcess, read_logs, run_cli, scrape
from tests.helpers import free_port, wait_for
from tests.shop_site import PRODUCTS, ForwardProxy, ShopSite

TOKEN = "tok-Sentinel-7c1e"
SESSION_1 = "sess-Sentinel-one-41"
SESSION_2 = "sess-Sentinel-two-93"


@pytest.fixture
def shop() -> Iterator[ShopSite]:
    s = ShopSite(TOKEN, SESSION_1)
    s.start()
    yield s
    s.stop()


def series(metrics: dict[str, float], name: str, **labels: str) -> float | None:
    for key, value in metrics.items():
        if key.startswith(name + "{") and all(f'{k}="{v}"' in key for k, v in labels.items()):
            return value
    return None


def test_product_pages_typed_cleaned_and_required(tmp_path: Path, shop: ShopSite) -> None:
    port = free_port()
    cfg = tmp_path / "crawler.yaml"
    cfg.write_text(f"""\
state_dir: {tmp_path}/var
metrics: {{listen: "127.0.0.1:{port}"}}
fetch: {{politeness_delay: 0s, robots: false}}
sources:
  - name: products
    every: 1h
    urls: ["{shop.base}/p/{{1..{PRODUCTS}}}"]
    timezone: Europe/Paris
    fields:
      title: "h1::text"
      price: {{selector: ".price::text", regex: '([\\d.,]+)', type: decimal, required: true}}
      link: {{selector: "a.more::attr(href)", type: url}}
      published: {{selector: "time::attr(datetime)", type: datetime}}
      stock: {{selector: ".stock::text", type: int, default: 0}}
      sku: {{json_ld: "offers.sku"}}
      state: {{embedded_json: "script#__NEXT_DATA__", path: "props.pageProps.item.state"}}
    key: [sku]
""")
    log = tmp_path / "crawler.log"
    proc = CrawlerProcess(cfg, log)
    try:
        wait_for_run(port, "success")
        metrics = _scrape(port)
    finally:
        assert proc.stop() == 0
    conn = sqlite3.connect(tmp_path / "var" / "crawler.sqlite")
    rows = {k: json.loads(d) for k, d in conn.execute("SELECT key, data FROM scraped_data")}
    conn.close()
    expected = {}
    for i in (1, 2, 4, 5):  # page 3 has no price: dropped
        expected[f"SKU-{i}"] = {
            "title": f"Product number {i}",  # whitespace collapsed
            "price": float(f"1{i}34.5{i}"),  # "£1.{i}34,5{i}" → a JSON number
            "link": f"{shop.base}/more/{i}.html",  # joined with the page URL
            "published": f"2026-07-0{i}T10:30:00+00:00",  # naive Paris summer time → UTC
            "stock": 0 if i == 4 else 10 * i,  # "lots" does not convert: default
            "sku": f"SKU-{i}",
            "state": "in_stock" if i % 2 else "sold_out",
        }
    assert rows == expected
    assert (
        series(
            metrics, "crawler_records_dropped_total", source="products", reason="missing_required"
        )
        == 1
    )
    assert series(metrics, "crawler_records_extracted_total", source="products") == 4
    assert series(metrics, "crawler_fields_invalid_total", source="products", field="stock") == 1
    assert series(metrics, "crawler_fields_missing_total", source="products", field="stock") == 1
    assert series(metrics, "crawler_fields_missing_total", source="products", field="price") == 0
    drops = [e for e in read_logs(log) if e.get("message", "").startswith("record dropped")]
    assert len(drops) == 1
    assert drops[0]["levelname" if "levelname" in drops[0] else "level"].upper() == "WARNING"
    assert drops[0]["field"] == "price" and drops[0]["url"] == f"{shop.base}/p/3"


def wait_for_run(port: int, outcome: str) -> None:
    """Until the running crawler on `port` counts a run with this outcome."""
    wait_for(
        lambda: (series(_scrape(port), "crawler_source_runs_total", outcome=outcome) or 0) >= 1,
        timeout=30,
    )


def _scrape(port: int) -> dict[str, float]:
    try:
        return scrape(port)
    except OSError:
        return {}


def api_config(tmp_path: Path, shop: ShopSite, port: int, storage: str) -> Path:
    headers = tmp_path / "shop.headers"
    headers.write_text(f"# rotated by a cron job\nX-Session: {SESSION_1}\n")
    cfg = tmp_path / "crawler.yaml"
    cfg.write_text(f"""\
state_dir: {tmp_path}/var
log_level: DEBUG
metrics: {{listen: "127.0.0.1:{port}"}}
{storage}
fetch: {{politeness_delay: 0s, robots: false, retry: {{attempts: 1}}}}
sources:
  - name: shop
    every: 1h
    urls: ["{shop.base}/api/search"]
    request:
      method: POST
      json: {{query: raspberry, page: 1}}
      headers: {{Accept-Language: en}}
      headers_file: shop.headers
      auth: {{bearer_env: SHOP_TOKEN}}
    parser: json
    items: results
    fields:
      sku: id
      price: {{path: price.amount, type: decimal, required: true}}
    key: [sku]
    history: true
""")
    return cfg


def history_rows(storage: str, tmp_path: Path, dsn: str | None) -> list[tuple[str, Any]]:
    sql = "SELECT key, data FROM scraped_data_history ORDER BY id"
    if dsn:
        with psycopg.connect(dsn) as conn:
            return [(k, d) for k, d in conn.execute(sql).fetchall()]
    conn = sqlite3.connect(tmp_path / "var" / "crawler.sqlite")
    try:
        return [(k, json.loads(d)) for k, d in conn.execute(sql).fetchall()]
    finally:
        conn.close()


def jobs_text(tmp_path: Path, dsn: str | None) -> str:
    sql = "SELECT * FROM crawler_jobs"
    if dsn:
        with psycopg.connect(dsn) as conn:
            return repr(conn.execute(sql).fetchall())
    conn = sqlite3.connect(tmp_path / "var" / "crawler.sqlite")
    try:
        return repr(conn.execute(sql).fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_post_api_with_secrets_and_history(
    tmp_path: Path, shop: ShopSite, backend: str, request: pytest.FixtureRequest
) -> None:
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgres" else None
    storage = f'storage: {{dsn: "{dsn}"}}' if dsn else ""
    port = free_port()
    cfg = api_config(tmp_path, shop, port, storage)
    env = {**os.environ, "SHOP_TOKEN": TOKEN}
    outputs = []

    def once() -> int:
        proc = run_cli("once", "-c", str(cfg), env=env)
        outputs.append(proc.stdout + proc.stderr)
        return proc.returncode

    # Run 1: everything right; the body sent is the configured JSON.
    assert once() == 0, outputs[-1]
    assert shop.seen_bodies[-1] == {"query": "raspberry", "page": 1}
    # Run 2: the server's session moved on, the header file not yet: 401, a failed run.
    shop.session = SESSION_2
    assert once() == 1
    assert shop.api_status[-1] == 401
    # Run 3: the header file is rewritten (read afresh each run) and one price changed.
    (tmp_path / "shop.headers").write_text(f"X-Session: {SESSION_2}\n")
    shop.prices["A1"] = "1.234,50"
    assert once() == 0, outputs[-1]
    # Run 4: nothing changed: no history row.
    assert once() == 0, outputs[-1]
    assert shop.api_status == [200, 401, 200, 200]
    assert history_rows(backend, tmp_path, dsn) == [
        ("A0", {"sku": "A0", "price": 0.99}),
        ("A1", {"sku": "A1", "price": 1.99}),
        ("A2", {"sku": "A2", "price": 2.99}),
        ("A1", {"sku": "A1", "price": 1234.5}),
    ]
    # /metrics of a running crawler (one more run, with the secrets in use).
    log = tmp_path / "run.log"
    proc = CrawlerProcess(cfg, log, env=env)
    try:
        wait_for_run(port, "success")
        metrics_text = json.dumps(_scrape(port))
    finally:
        assert proc.stop() == 0
    everything = "\n".join(outputs) + log.read_text() + metrics_text + jobs_text(tmp_path, dsn)
    assert "'failure'" in jobs_text(tmp_path, dsn)  # the 401 run is there, as a failure
    for secret in (TOKEN, SESSION_1, SESSION_2):
        assert secret not in everything


def test_a_header_file_gone_at_run_time_fails_the_run_by_name(
    tmp_path: Path, shop: ShopSite
) -> None:
    port = free_port()
    cfg = api_config(tmp_path, shop, port, "")
    cfg.write_text(cfg.read_text().replace("every: 1h", "every: 1s"))
    env = {**os.environ, "SHOP_TOKEN": TOKEN}
    log = tmp_path / "run.log"
    proc = CrawlerProcess(cfg, log, env=env)
    try:
        wait_for_run(port, "success")
        (tmp_path / "shop.headers").unlink()  # a rotation gone wrong
        wait_for_run(port, "failure")
    finally:
        assert proc.stop() == 0
    jobs = jobs_text(tmp_path, None)
    assert f"cannot read {tmp_path / 'shop.headers'}" in jobs
    failed = [
        e
        for e in read_logs(log)
        if e.get("message") == "source run finished" and e.get("status") == "failure"
    ]
    assert failed and failed[0]["error_kind"] == "secret"
    assert TOKEN not in log.read_text() + jobs and SESSION_1 not in log.read_text() + jobs


@pytest.mark.parametrize("how", ["fetch.proxy", "HTTP_PROXY"])
def test_proxy_and_user_agent(tmp_path: Path, shop: ShopSite, how: str) -> None:
    proxy = ForwardProxy().start()
    try:
        url = f"http://u:proxy-pw-Sentinel@127.0.0.1:{proxy.port}"
        fetch = f'{{politeness_delay: 0s, robots: false, proxy: "{url}"}}'
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy")}
        if how == "HTTP_PROXY":
            fetch, env["HTTP_PROXY"] = "{politeness_delay: 0s, robots: false}", url
        cfg = tmp_path / "crawler.yaml"
        cfg.write_text(f"""\
state_dir: {tmp_path}/var
fetch: {fetch}
sources:
  - name: products
    every: 1h
    urls: ["{shop.base}/p/{{1..2}}"]
    user_agent: shopbot/1.0 (+https://me.example)
    fields: {{title: "h1::text"}}
""")
        proc = run_cli("once", "-c", str(cfg), env=env)
    finally:
        proxy.stop()
    assert proc.returncode == 0, proc.stderr
    assert sorted(proxy.proxied) == [f"{shop.base}/p/1", f"{shop.base}/p/2"]
    assert all(a.startswith("Basic ") for a in proxy.auth)  # the proxy's credentials went along
    assert shop.agents == ["shopbot/1.0 (+https://me.example)"] * 2
    assert "proxy-pw-Sentinel" not in proc.stdout + proc.stderr
