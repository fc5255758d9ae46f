"""A render's account of its requests (issue 26 item 5): every one counted, only the first
`KEPT` URLs kept, each shortened to `URL_CHARS`, so a page of thousands of requests or of
megabyte `data:` URLs costs the logs and `preview` a bounded amount."""

from __future__ import annotations

from crawler.render.page import KEPT, URL_CHARS, Rendered


def test_every_request_is_counted_and_only_the_first_urls_kept_shortened() -> None:
    r = Rendered(url="https://shop.example/", status=200)
    urls = [f"https://cdn.example/{i}.js" for i in range(KEPT + 30)]
    for url in urls:
        r.note("failed", url)
    r.note("refused", "data:text/plain;base64," + "A" * 5_000_000)

    assert r.counts == {"failed": KEPT + 30, "refused": 1}
    assert r.failed == urls[:KEPT]
    [refused] = r.refused
    assert refused == ("data:text/plain;base64," + "A" * URL_CHARS)[:URL_CHARS] + "…"
    assert (r.fetched, r.blocked) == ([], [])
