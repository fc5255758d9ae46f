"""The floor: the least any crawler can spend on the benchmark's crawl.

A bare aiohttp loop (16 requests in flight) fetches every page and extracts the 20 records
with parsel, the way the crawler's selectors read them, with the same five fields as the
benchmark's configuration (bench/run.sh): three texts, a number cut out by a regex, and the tag
links made absolute (a root-relative link joined the cheap way, as the crawler does); no
scheduling, politeness, metrics, logging or storage. Prints `records N` so bench/run.sh can
check that it did the whole work.

Usage: python bench/floor.py PAGES PORT [CONCURRENCY]
"""

from __future__ import annotations

import asyncio
import re
import sys
from urllib.parse import urljoin

import aiohttp
from parsel import Selector

NUMBER = re.compile(r"^#\d+\.(\d+)")


def absolute(origin: str, url: str, link: str) -> str:
    return (
        origin + link if link.startswith("/") and not link.startswith("//") else urljoin(url, link)
    )


async def crawl(pages: int, port: int, concurrency: int) -> int:
    records = 0
    todo = iter(range(pages))

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal records
        origin = f"http://127.0.0.1:{port}"
        for i in todo:
            url = f"{origin}/page/{i}"
            async with session.get(url) as resp:
                body = await resp.text()
            for quote in Selector(text=body).css("div.quote"):
                text = quote.css("span.text::text").get()
                number = NUMBER.match(text or "")
                record = {
                    "text": text,
                    "author": quote.css("small.author::text").get(),
                    "tags": quote.css("a.tag::text").getall(),
                    "n": int(number.group(1)) if number else None,
                    "tag_links": [
                        absolute(origin, url, link)
                        for link in quote.css("a.tag::attr(href)").getall()
                    ],
                }
                records += record["text"] is not None

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return records


if __name__ == "__main__":
    pages, port = int(sys.argv[1]), int(sys.argv[2])
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    print("records", asyncio.run(crawl(pages, port, concurrency)))
