"""The peer: the same crawl and extraction in Scrapy, what a user would pick instead.

Scrapy's defaults except what makes the comparison fair: the same concurrency, no robots.txt
(the crawler's bench run turns it off too), no telnet console, errors-only logging. Items are
not stored (no feed export). Prints `records N` so bench/run.sh can check the whole work.

Usage: python bench/scrapy_peer.py PAGES PORT [CONCURRENCY]
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy.crawler import CrawlerProcess

PAGES, PORT = int(sys.argv[1]), int(sys.argv[2])
CONCURRENCY = int(sys.argv[3]) if len(sys.argv) > 3 else 16
records = 0


class Quotes(scrapy.Spider):
    name = "quotes"

    async def start(self) -> AsyncIterator[scrapy.Request]:  # Scrapy >= 2.13
        for i in range(PAGES):
            yield scrapy.Request(f"http://127.0.0.1:{PORT}/page/{i}")

    def parse(self, response: Any) -> Iterator[dict[str, Any]]:
        global records
        for quote in response.css("div.quote"):
            records += 1
            yield {
                "text": quote.css("span.text::text").get(),
                "author": quote.css("small.author::text").get(),
                "tags": quote.css("a.tag::text").getall(),
            }


process = CrawlerProcess(
    settings={
        "LOG_LEVEL": "ERROR",
        "CONCURRENT_REQUESTS": CONCURRENCY,
        "CONCURRENT_REQUESTS_PER_DOMAIN": CONCURRENCY,
        "ROBOTSTXT_OBEY": False,
        "TELNETCONSOLE_ENABLED": False,
    }
)
process.crawl(Quotes)
process.start()
print("records", records)
