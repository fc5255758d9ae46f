"""`crawler preview`: the records of one live page, through the real fetch layer, with nothing
stored and no state changed (state directory byte-for-byte, no rows in PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import psycopg
import pytest
from aiohttp import web

from tests.catalogue_site import CatalogueSite
from tests.crawler_proc import run_cli
from tests.site import ITEMS_PER_PAGE, Site, html_source, items

FIELDS = """\
rating: span.rating::text
is_author: {selector: small.author::text, type: bool}"""


def config(site: Site, tmp_path: Path, dsn: str, extra_field: str = "") -> Path:
    path = tmp_path / "crawler.yaml"
    path.write_text(f"""\
state_dir: {tmp_path}/var
storage: {{dsn: "{dsn}"}}
fetch: {{politeness_delay: 0s}}
sources:
{html_source(site, "quotes", 3, FIELDS + extra_field)}""")
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with the hash of its bytes (and its mode and mtime)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.stat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[str(p.relative_to(folder))] = f"{digest} {st.st_mode:o} {st.st_mtime_ns}"
    return out


def counts(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        data = conn.execute("SELECT count(*) FROM scraped_data").fetchone()
        jobs = conn.execute("SELECT count(*) FROM crawler_jobs").fetchone()
    assert data is not None and jobs is not None
    return data[0], jobs[0]


def test_preview_shows_records_and_missing_fields_and_changes_nothing(
    site: Site, tmp_path: Path, pg_dsn: str
) -> None:
    cfg = config(site, tmp_path, pg_dsn)
    # A crawl first, so there is state to keep: the store's rows, the HTTP state's validators.
    once = run_cli("once", "-c", str(cfg))
    assert once.returncode == 0, once.stderr
    state = tmp_path / "var"
    before, rows_before = snapshot(state), counts(pg_dsn)
    assert "http_state.sqlite" in before and rows_before == (3 * ITEMS_PER_PAGE, 1)
    hits_before = dict(site.hits)

    proc = run_cli("preview", "-c", str(cfg), "quotes", "--limit", "5", env=None)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["id", "text", "author", "tags", "rating", "is_author"]
    expected = items(0)[:5]
    for number, (line, item) in enumerate(zip(lines[2:7], expected), start=1):
        assert line.split()[0] == str(number)
        assert line.split()[1] == item["id"]
        assert item["text"] in line and item["author"] in line
        assert ", ".join(item["tags"]) in line and re.search(r"—\s+—$", line)
    assert len(lines) == 7 + 4  # header, rule, 5 records, blank line, three summary lines
    assert lines[8].startswith(f"{ITEMS_PER_PAGE} records (showing 5) from {site.base}/page/0 ")
    assert lines[9] == (
        f"missing fields: rating in {ITEMS_PER_PAGE} of {ITEMS_PER_PAGE} records; "
        f"is_author in {ITEMS_PER_PAGE} of {ITEMS_PER_PAGE} records"
    )
    assert (
        lines[10]
        == "did not convert: is_author: 20 values, e.g. 'Author 0', 'Author 1', 'Author 2'"
    )
    # Politely, through the fetch layer: robots.txt asked first, one request for the page,
    # and no conditional headers (the validators of the crawl are not used).
    assert site.hits["/robots.txt"] - hits_before.get("/robots.txt", 0) == 1
    assert site.hits["/page/0"] - hits_before["/page/0"] == 1
    assert snapshot(state) == before
    assert counts(pg_dsn) == rows_before


def test_preview_json_lines_are_the_records_as_stored(
    site: Site, tmp_path: Path, pg_dsn: str
) -> None:
    cfg = config(site, tmp_path, pg_dsn)
    proc = run_cli("preview", "-c", str(cfg), "quotes", "--url", f"{site.base}/page/2", "--json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["key"] for r in records] == [it["id"] for it in items(2)]
    assert records[0]["data"] == {
        "id": "p2-q0",
        "text": "Quote 0 of page 2 v0",
        "author": "Author 0",
        "tags": ["t0", "t3"],
        "rating": None,
        "is_author": None,
    }
    assert "missing fields: rating in 20 of 20 records" in proc.stderr  # not in the data
    assert "parsed by lxml)" in proc.stderr  # its `id` is an XPath: not for Lexbor
    assert not (tmp_path / "var").exists()  # a preview alone creates no state at all
    with psycopg.connect(pg_dsn) as conn:  # not even the schema: nothing connected
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,)


def test_nothing_extracted_exits_1(tmp_path: Path, pg_dsn: str) -> None:
    async def empty(request: web.Request) -> web.Response:
        return web.Response(
            text="<html><body><p>no quotes</p></body></html>", content_type="text/html"
        )

    site = Site()
    site.app.router.add_get("/empty", empty)
    site.start()
    try:
        cfg = config(site, tmp_path, pg_dsn)
        proc = run_cli("preview", "-c", str(cfg), "quotes", "--url", f"{site.base}/empty")
    finally:
        site.stop()
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"0 records from {site.base}/empty (HTTP 200")


def test_a_page_that_fails_exits_1_with_its_error(site: Site, tmp_path: Path, pg_dsn: str) -> None:
    site.fail = True
    cfg = config(site, tmp_path, pg_dsn)
    text = cfg.read_text().replace(
        "fetch: {politeness_delay: 0s}", "fetch: {politeness_delay: 0s, retry: {attempts: 1}}"
    )
    cfg.write_text(text)
    proc = run_cli("preview", "-c", str(cfg), "quotes")
    assert proc.returncode == 1
    assert f"crawler: {site.base}/page/0: http_5xx: HTTP 500" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuch"], "crawler: unknown source 'nosuch' (configured: quotes)"),
        (["quotes", "--url", "file:///etc/passwd"], "is not an http(s) URL"),
    ],
)
def test_source_or_url_errors_exit_2(
    site: Site, tmp_path: Path, pg_dsn: str, args: list[str], message: str
) -> None:
    proc = run_cli("preview", "-c", str(config(site, tmp_path, pg_dsn)), *args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_config_errors_exit_2(site: Site, tmp_path: Path, pg_dsn: str) -> None:
    cfg = config(site, tmp_path, pg_dsn, extra_field="\nbad: 'span[[['")
    proc = run_cli("preview", "-c", str(cfg), "quotes")
    assert proc.returncode == 2
    assert f"{cfg}:16: sources.quotes.fields.bad:" in proc.stderr


def test_a_listing_with_follow_shows_its_links_and_the_first_detail_records(
    tmp_path: Path,
) -> None:
    other = Site(host="127.0.0.2").start()  # the catalogue links here: never requested
    cat = CatalogueSite(other=other.base).start()
    try:
        path = tmp_path / "crawler.yaml"
        path.write_text(f"""\
state_dir: {tmp_path}/var
fetch: {{politeness_delay: 0s}}
sources:
  - name: books
    every: 6h
    urls: ["{cat.base}/cat/page-1.html"]
    paginate: {{next: "li.next a::attr(href)", max_pages: 50}}
    follow:
      links: "article.product_pod h3 a::attr(href)"
      max_per_run: 1000
    fields: {{title: "h1::text", upc: "table tr:nth-child(1) td::text"}}
    key: [upc]
""")
        proc = run_cli("preview", "-c", str(path), "books", "--limit", "3")
        hits = dict(cat.hits)
        page2 = run_cli("preview", "-c", str(path), "books", "--url", f"{cat.base}/cat/page-2.html")
        page3 = run_cli("preview", "-c", str(path), "books", "--url", f"{cat.base}/cat/page-3.html")
    finally:
        cat.stop()
        other.stop()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # The first three detail pages' records, in the listing's order.
    assert [line.split()[1:3] for line in out.splitlines()[2:5]] == [
        [f"Book {n}".split()[0], f"Book {n}".split()[1]] for n in range(3)
    ]
    assert re.search(
        rf"^listing {cat.base}/cat/page-1\.html \(HTTP 200, [\d,]+ bytes\): ", out, re.M
    )
    assert f"  {cat.base}/p/0.html\n" in out
    assert "3 records from 3 detail pages" in out
    assert f"next page: {cat.base}/cat/page-2.html" in out
    # Only what was shown was fetched: the listing, three detail pages, nothing else.
    assert hits["/cat/page-1.html"] == 1 and "/cat/page-2.html" not in hits
    assert [hits.get(f"/p/{n}.html", 0) for n in range(5)] == [1, 1, 1, 0, 0]
    assert sum(other.hits.values()) == 0
    assert not (tmp_path / "var").exists()
    # Page 2's traps are listed with why they are not followed.
    assert page2.returncode == 0, page2.stderr
    assert f"  {other.base}/p/1.html  (not followed: off_host)" in page2.stdout
    assert "11 records from 11 detail pages" in page2.stdout  # its 10 and one of page 1's
    # A detail page robots.txt forbids fails, is named, and costs nothing else.
    assert page3.returncode == 0, page3.stderr
    assert f"detail page failed: {cat.base}/private/1.html: robots_denied" in page3.stdout
    assert "10 records from 11 detail pages" in page3.stdout
    assert "next page: none" in page3.stdout
