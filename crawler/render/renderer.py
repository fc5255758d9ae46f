"""A render source's pages for one run: rendered in the run's browser context, every request
of every page fetched by the crawler's own `Fetcher`.

`Renderer.fetch()` stands in for `Fetcher.fetch()` in the run's walk and gives the same
`Page`, whose body is the rendered DOM (as HTML): so extraction, pagination's repeated-body
rule and the unchanged-page skip all see what the browser built, not the shell every page of
a single-page app shares. The document's own HTTP validators would say nothing about the data
its script fetches, so the state kept for a rendered page is the rendered DOM's hash.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from crawler.config.sources import SourceConfig
from crawler.errors import FetchError
from crawler.fetch.client import Fetcher
from crawler.fetch.request import Prepared, origin
from crawler.fetch.transport import Page, revalidated
from crawler.observability.metrics import Metrics
from crawler.render.browser import Browser, Context
from crawler.render.page import Rendered, RenderSettings, Response, Wanted

log = logging.getLogger("crawler.render")

# A Content-Type that says text gets the charset the fetch layer chose for the body.
_TEXTUAL = ("text/", "application/javascript", "application/json", "application/xml")


@contextlib.asynccontextmanager
async def rendering(
    browser: Browser, fetcher: Fetcher, metrics: Metrics, source: SourceConfig
) -> AsyncIterator[Renderer]:
    """A source run's renderer, in a browser context of its own closed when the run ends."""
    async with browser.context(source.name) as context:
        yield Renderer(fetcher, context, metrics, source)


def settings_of(source: SourceConfig, max_bytes: int) -> RenderSettings:
    r = source.render
    assert r is not None
    return RenderSettings(
        wait="selector" if r.wait_for is not None else r.wait,
        wait_for=r.wait_for,
        timeout=r.timeout,
        block=frozenset(r.block),
        max_requests=r.max_requests,
        max_bytes=max_bytes,
    )


class Renderer:
    """One source run's rendering; `last` is the last render's account (for `preview`)."""

    def __init__(
        self, fetcher: Fetcher, context: Context, metrics: Metrics, source: SourceConfig
    ) -> None:
        self.fetcher, self.context, self.metrics = fetcher, context, metrics
        self.name = source.name
        self.settings = settings_of(source, fetcher.fc.max_response_bytes)
        self.last: Rendered | None = None

    async def fetch(self, source: SourceConfig, url: str, *, conditional: bool = True) -> Page:
        """Render `url` for `source` and give it as a fetched page; raise FetchError."""
        old = await self.fetcher.known(source, url)
        fetch = functools.partial(self._fetch, source, origin(url))
        took = self.metrics.render_seconds.labels(self.name).observe
        try:
            rendered = await self.context.render(url, self.settings, fetch, self._count, took)
        except FetchError:
            self.last = None
            raise
        self.last = rendered
        log.debug(
            "page rendered",
            extra={
                "source": self.name,
                "url": url,
                "duration_ms": round(rendered.duration * 1000),
                "fetched": rendered.counts.get("fetched", 0),
                "blocked": rendered.counts.get("blocked", 0),
                "refused": rendered.counts.get("refused", 0),
            },
        )
        page = Page(
            url=url,
            status=rendered.status,
            body=rendered.html.encode("utf-8", "surrogatepass"),
            content_type="text/html",
            charset="utf-8",
            duration=rendered.duration,
        )
        if self.fetcher.state is None:
            return page
        return revalidated(page, old, conditional)

    def _count(self, outcome: str) -> None:
        self.metrics.render_requests.labels(self.name, outcome).inc()

    async def _fetch(self, source: SourceConfig, home: str, wanted: Wanted) -> Response:
        asked = Prepared(method=wanted.method, headers=wanted.headers, data=wanted.body)
        page = await self.fetcher.fetch_for_page(
            source, wanted.url, asked, home, document=wanted.document
        )
        ctype = page.content_type
        if page.charset and ctype.startswith(_TEXTUAL):
            ctype = f"{ctype}; charset={page.charset}"
        return Response(page.status, ctype, page.body, page.location)
