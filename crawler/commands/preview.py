"""`crawler preview`: try a source's selectors on one live page without storing anything.

The page is fetched through the same `Fetcher` as a crawl (robots.txt, politeness, retries,
size caps), so what the preview shows is what a run would get. Nothing is written anywhere:
conditional GET is off for the preview (no HTTP state file, so no validators are read or
recorded), there is no sink, spool or lease, and the metrics go to a throwaway registry. The
state directory is left byte-for-byte as it was.

A source with `render` has its page rendered by the configured browser, as in a run (every
request through the same fetcher), and the summary says how long it took, how many requests
the page made and which were blocked or refused.

Output: a table of the records (or one JSON object per line with `--json`), then which fields
were missing in how many records. Exit status 1 when the page gave no record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crawler.config.root import Config
from crawler.config.sources import SourceConfig
from crawler.record import Record, dumps
from crawler.sources.extract import Extractor
from crawler.sources.pagedata import is_missing
from crawler.sources.tally import FieldTally

if TYPE_CHECKING:
    from crawler.render.page import Rendered

MISSING = "—"  # how a missing value shows in the table
MIN_COLUMN = 6
LINKS_SHOWN = 10  # a listing's links printed, at most


@dataclass
class Preview:
    """What one preview saw."""

    source: str
    url: str
    status: int = 0
    size: int = 0
    duration: float = 0.0
    records: list[Record] = field(default_factory=list)
    total: int = 0  # records on the page (`records` holds at most `limit`)
    tally: FieldTally = field(default_factory=FieldTally)  # missing, invalid, dropped
    # With `follow`: the listing's links (URL, why not followed or None), detail pages
    # fetched, and those that failed (URL, error). With `paginate`: the next listing page.
    links: list[tuple[str, str | None]] = field(default_factory=list)
    details: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    next_page: str | None = None
    engine: str = ""  # html: which parser read the page (lexbor or lxml)
    login: str = ""  # with a `login`: as whom, and the session's cookie names (never values)
    rendered: Rendered | None = None  # `render`: what the browser did


def preview_config(config: Config) -> Config:
    """The configuration a preview fetches with: the same, minus anything that keeps state."""
    return dataclasses.replace(
        config, fetch=dataclasses.replace(config.fetch, conditional_get=False)
    )


async def preview(config: Config, source: SourceConfig, url: str | None, limit: int) -> Preview:
    """Fetch `url` (default: the source's first URL) and extract it; raise FetchError when the
    page cannot be fetched or parsed. With `follow`, the page is a listing: its links are
    listed, and detail pages are fetched (in order) until `limit` records came back."""
    from prometheus_client import CollectorRegistry

    from crawler.fetch.client import Fetcher
    from crawler.observability.metrics import Metrics

    target = url or source.urls[0]
    result = Preview(source=source.name, url=target)
    config = preview_config(config)
    started = time.monotonic()
    # A real login when the source has one, but no stored session is read or written.
    async with contextlib.AsyncExitStack() as stack:
        metrics = Metrics(CollectorRegistry())
        fetcher = await stack.enter_async_context(Fetcher(config, metrics, keep_sessions=False))
        fetcher.begin_run(source)
        await fetcher.log_in(source)
        session = fetcher.sessions.get(source.name)
        if source.login is not None and session is not None:
            result.login = session.describe()
        pages: Any = fetcher  # what fetches the source's html pages: it, or the renderer
        if source.render is not None and config.browser is not None:
            from crawler.render.browser import Browser
            from crawler.render.renderer import rendering

            browser = await stack.enter_async_context(Browser(config.browser, metrics))
            pages = await stack.enter_async_context(rendering(browser, fetcher, metrics, source))
        page = await pages.fetch(source, target)
        result.rendered = getattr(pages, "last", None)
        result.status, result.size = page.status, len(page.body)
        if source.follow is None:
            extractor = Extractor(source)
            doc = extractor.parse(page.body, page.charset)
            if extractor.parser == "html":
                result.engine = extractor.engine_of(doc)
            records = extractor.records(doc, page.url, result.tally)
        else:
            doc = Extractor(dataclasses.replace(source, items=None, fields=())).parse(
                page.body, page.charset
            )
            records = await _details(pages, source, page.url, doc, limit, result)
        if source.paginate is not None:
            from crawler.sources.discover import Paginator

            paginator = Paginator(source.paginate, source.parser)
            result.next_page = paginator.next_url(page.url, doc, page.links)
    result.duration = time.monotonic() - started
    result.total = len(records)
    result.records = records[:limit]
    return result


async def _details(
    fetcher: Any, source: SourceConfig, listing: str, doc: Any, limit: int, result: Preview
) -> list[Record]:
    """The listing's links (each with why it is not followed, if so), and the records of the
    detail pages it leads to, fetched one by one until `limit` records came back."""
    from urllib.parse import urlsplit

    from crawler.config.discovery import EXCLUDED
    from crawler.errors import FetchError
    from crawler.sources.discover import LinkFilter, absolute, compile_links

    follow = source.follow
    assert follow is not None
    links = LinkFilter.for_follow(follow, set())
    host = urlsplit(listing).netloc
    for raw in compile_links(source.parser, follow.links)(doc):
        url = absolute(listing, raw)
        result.links.append((url or raw, EXCLUDED if url is None else links.check(url, host)))
    detail_source = dataclasses.replace(source, parser=follow.parser)
    extractor = Extractor(source, follow.parser)
    records: list[Record] = []
    for url, skipped in result.links:
        if skipped is not None or len(records) >= limit:
            continue
        try:
            page = await fetcher.fetch(detail_source, url)
            records += extractor.extract(page.body, page.charset, page.url, result.tally)
        except FetchError as exc:
            result.failed.append((url, str(exc)))
        result.details += 1
    return records


# --------------------------------------------------------------------------- rendering


def _cell(value: Any) -> str:
    if is_missing(value):
        return MISSING
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, str):
        return " ".join(value.split())
    return dumps(value) if isinstance(value, dict) else str(value)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def table(names: list[str], rows: Iterable[dict[str, Any]], width: int) -> list[str]:
    """Records as an aligned table at most `width` columns wide: the widest columns are cut
    (with …) until it fits. Too many fields for the width: one block per record instead."""
    cells = [[_cell(r.get(n)) for n in names] for r in rows]
    number = len(str(len(cells)))
    gaps = (number + 2) + 2 * len(names)  # "#  " then two spaces between columns
    if len(names) * MIN_COLUMN + gaps > width:
        return _blocks(names, cells, width)
    widths = [max([len(n)] + [len(c[i]) for c in cells]) for i, n in enumerate(names)]
    while sum(widths) + gaps > width:
        widest = max(range(len(widths)), key=widths.__getitem__)
        widths[widest] -= 1
    out = [
        " " * number + "  " + "  ".join(_clip(n, w).ljust(w) for n, w in zip(names, widths)),
        " " * number + "  " + "  ".join("─" * w for w in widths),
    ]
    for i, row in enumerate(cells, start=1):
        line = "  ".join(_clip(c, w).ljust(w) for c, w in zip(row, widths))
        out.append(f"{i:>{number}}  {line}".rstrip())
    return out


def _blocks(names: list[str], cells: list[list[str]], width: int) -> list[str]:
    label = max(len(n) for n in names)
    out: list[str] = []
    for i, row in enumerate(cells, start=1):
        out.append(f"record {i}")
        out += [f"  {n:<{label}}  {_clip(c, width - label - 4)}" for n, c in zip(names, row)]
    return out


def summary(result: Preview, source: SourceConfig) -> list[str]:
    """The closing lines: where the records came from, and what was missing."""
    shown = len(result.records)
    more = f" (showing {shown})" if shown < result.total else ""
    lines = [result.login] if result.login else []
    if source.follow is not None:
        followed = sum(1 for _, why in result.links if why is None)
        lines.append(
            f"listing {result.url} (HTTP {result.status}, {result.size:,} bytes): "
            f"{len(result.links)} links, {followed} to follow"
        )
        # The first links to follow, and the first skipped ones with why (the surprises).
        listed = [x for x in result.links if x[1] is None][:LINKS_SHOWN]
        listed += [x for x in result.links if x[1] is not None][:LINKS_SHOWN]
        for url, why in listed:
            lines.append(f"  {url}" + (f"  (not followed: {why})" if why else ""))
        if len(result.links) > len(listed):
            lines.append(f"  … {len(result.links) - len(listed)} more")
        lines.append(
            f"{result.total} records{more} from {result.details} detail pages "
            f"({result.duration * 1000:.0f} ms in all)"
        )
        lines += [f"detail page failed: {url}: {error}" for url, error in result.failed]
    else:
        lines.append(
            f"{result.total} records{more} from {result.url} "
            f"(HTTP {result.status}, {result.size:,} bytes, {result.duration * 1000:.0f} ms"
            + (f", parsed by {result.engine})" if result.engine else ")")
        )
    if source.paginate is not None:
        lines.append(f"next page: {result.next_page or 'none'}")
    if result.rendered is not None:
        lines += _rendered(result.rendered)
    tally = result.tally
    if result.total:
        counts = [(f.name, tally.missing[f.name]) for f in source.fields]
        missing = [f"{n} in {c} of {result.total} records" for n, c in counts if c]
        lines.append("missing fields: " + ("; ".join(missing) if missing else "none"))
    for name, count in tally.invalid.items():
        examples = ", ".join(tally.invalid_examples.get(name, []))
        lines.append(f"did not convert: {name}: {count} values, e.g. {examples}")
    if tally.dropped:
        lines.append(f"dropped: {tally.dropped} records without a required field")
    return lines


def _rendered(r: Rendered) -> list[str]:
    """What rendering the (first) page took: time, requests, what was kept out."""
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(r.blocked_kinds.items()))
    lines = [
        f"rendered in {r.duration:.2f} s: {r.counts.get('fetched', 0)} requests fetched, "
        f"blocked: {r.counts.get('blocked', 0)}"
        + (f" ({kinds})" if kinds else "")
        + f", refused: {r.counts.get('refused', 0)}, failed: {r.counts.get('failed', 0)}"
    ]
    lines += [f"  refused: {url}" for url in r.refused[:LINKS_SHOWN]]
    lines += [f"  failed: {url}" for url in r.failed[:LINKS_SHOWN]]
    return lines


def json_lines(result: Preview) -> list[str]:
    """One JSON object per record, as it would be stored: key and data."""
    return [json.dumps({"key": r.key, "data": r.data}, ensure_ascii=False) for r in result.records]


def terminal_width() -> int:
    return shutil.get_terminal_size((100, 24)).columns


def command(config: Config, name: str, url: str | None, limit: int, as_json: bool) -> int:
    """`crawler preview`: exit 0 with records, 1 without (or when the page failed), 2 for a
    source or URL the configuration does not allow."""
    import asyncio
    import sys
    from urllib.parse import urlsplit

    from crawler.errors import FetchError, LoginFailed, SecretUnavailable

    try:
        source = config.source(name)
    except KeyError:
        known = ", ".join(s.name for s in config.sources)
        print(f"crawler: unknown source {name!r} (configured: {known})", file=sys.stderr)
        return 2
    if url is not None and (
        urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc
    ):
        print(f"crawler: --url {url!r} is not an http(s) URL", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(preview(config, source, url, limit))
    except FetchError as exc:
        print(f"crawler: {url or source.urls[0]}: {exc}", file=sys.stderr)
        return 1
    except (LoginFailed, SecretUnavailable) as exc:
        print(f"crawler: {exc}", file=sys.stderr)
        return 1
    names = [f.name for f in source.fields]
    if as_json:
        for line in json_lines(result):
            print(line)
        for line in summary(result, source):
            print(line, file=sys.stderr)
    else:
        if result.records:
            for line in table(names, (r.data for r in result.records), terminal_width()):
                print(line)
            print()
        for line in summary(result, source):
            print(line)
    return 0 if result.total else 1
