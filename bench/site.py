"""The benchmark's synthetic site on 127.0.0.1: `/page/<i>` for i in 0 … PAGES-1.

Each page is an HTML listing of 20 quotes in quotes.toscrape.com's markup (text, author, 1-4
tags) plus a pager and a footer, about 6.5 KB, like a real listing page. Every record is unique
(its text carries the page and item numbers), so a crawler that stores them must end up with
exactly PAGES x 20 rows. Pages are built once at start-up and served from memory, so the site
costs the crawlers under test as little CPU as possible.

Usage: python bench/site.py --port 8765 --pages 1000
"""

from __future__ import annotations

import argparse
import random

from aiohttp import web

ITEMS = 20
AUTHORS = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov")
TAGS = ("simplicity", "change", "books", "life", "humor", "truth", "work", "science")
SENTENCE = (
    "a program is a poem that runs and every bug is a question the machine asks "
    "back while we learn to listen to what it needs"
)
WORDS = SENTENCE.split()


def page(i: int, rnd: random.Random) -> bytes:
    out = [f"<html><head><title>Quotes, page {i}</title></head><body><div class='container'>"]
    for j in range(ITEMS):
        text = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(6, 16)))
        tags = "".join(
            f"<a class='tag' href='/tag/{t}'>{t}</a>" for t in rnd.sample(TAGS, rnd.randint(1, 4))
        )
        out.append(
            f"<div class='quote'><span class='text'>#{i}.{j} {text}</span>"
            f"<span>by <small class='author'>{rnd.choice(AUTHORS)}</small></span>"
            f"<div class='tags'>{tags}</div></div>"
        )
    out.append(f"<nav><ul class='pager'><li class='next'><a href='/page/{i + 1}'>Next</a></li>")
    out.append("</ul></nav><footer>" + "lorem ipsum dolor " * 20 + "</footer></div></body></html>")
    return "".join(out).encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--pages", type=int, default=1000)
    args = ap.parse_args()
    rnd = random.Random(14)  # the same site on every run
    pages = [page(i, rnd) for i in range(args.pages)]

    async def serve(request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        if not 0 <= i < len(pages):
            raise web.HTTPNotFound()
        return web.Response(body=pages[i], content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get(r"/page/{i:\d+}", serve)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
