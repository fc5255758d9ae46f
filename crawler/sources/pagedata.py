"""One page as the fields see it (`PageData`): its URL, its parsed document, its `<base href>`,
and the structured data parsed from it on first use (JSON-LD, embedded JSON), shared by every
record of the page."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urljoin


def is_missing(value: Any) -> bool:
    return value is None or value == "" or value == []


class PageData:
    """One page as the fields see it: its URL, its parsed document, and the structured data
    parsed from it on first use (JSON-LD, embedded JSON), shared by every record of the page."""

    __slots__ = ("_base", "_embedded", "_json_ld", "lexbor", "root", "url")

    def __init__(self, url: str, root: Any, lexbor: bool = False) -> None:
        self.url, self.root, self.lexbor = url, root, lexbor
        self._json_ld: list[Any] | None = None
        self._embedded: dict[str, Any] = {}
        self._base: str | None = None

    @property
    def base(self) -> str:
        """The URL relative links resolve against: `<base href>` if the page has one."""
        if self._base is None:
            self._base = self.url
            if self.lexbor:
                from crawler.sources.lexbor import base_href

                href = base_href(self.root)
            else:
                finder = getattr(self.root, "find", None)
                el = finder(".//base[@href]") if finder is not None else None
                href = None if el is None else el.get("href")
            if href is not None:
                self._base = urljoin(self.url, href.strip())
        return self._base

    def json_ld(self) -> list[Any]:
        """Every schema.org object in the page's `application/ld+json` scripts (lists and
        `@graph` flattened); a script that is not valid JSON is skipped."""
        if self._json_ld is None:
            found: list[Any] = []
            if self.lexbor:
                from crawler.sources.lexbor import ld_json_scripts

                texts = ld_json_scripts(self.root)
            else:
                texts = [script.text for script in _ld_xpath()(self.root)]
            for text in texts:
                doc = _loads(text)
                stack = [doc]
                while stack:
                    item = stack.pop(0)
                    if isinstance(item, list):
                        stack[:0] = item
                    elif isinstance(item, dict):
                        found.append(item)
                        graph = item.get("@graph")
                        if isinstance(graph, list):
                            stack.extend(graph)
            self._json_ld = found
        return self._json_ld

    def embedded(self, selector: str, xp: Any) -> Any:
        if selector not in self._embedded:
            doc = None
            for el in xp(self.root):
                doc = _loads(el if isinstance(el, str) else el.text)
                if doc is not None:
                    break
            self._embedded[selector] = doc
        return self._embedded[selector]


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


_LD: list[Any] = []  # the JSON-LD script XPath, built on first use (lxml imported lazily)


def _ld_xpath() -> Any:
    if not _LD:
        from lxml import etree

        _LD.append(
            etree.XPath(
                "//script[translate(@type, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ',"
                " 'abcdefghijklmnopqrstuvwxyz')='application/ld+json']"
            )
        )
    return _LD[0]
