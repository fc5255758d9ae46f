"""A CSS selector is checked by translating it (cssselect refuses what it cannot translate),
without compiling the XPath with lxml: a CSS-only source on the Lexbor path then never imports
lxml (~4 MiB of RSS, issue 13). The verdict must be lxml's own, selector for selector."""

from __future__ import annotations

import pytest
from lxml import etree

from crawler.config.selectors import check_selector, xpath_of
from tests.unit.test_lexbor_parity import SELECTORS

# Beyond the suite's selectors: the corners of cssselect's and parsel's dialect, good and bad.
CORNERS = [
    "*",
    "a[href^='http']",
    '*::attr("a b")',
    "p::attr(xml:lang)",
    "svg|rect",
    "*|a",
    "a[ns|href]",
    "li:nth-child(2n+1)",
    "p:nth-last-child(-n+2)",
    "p:not(.x)",
    "p:not(a b)",
    "p:contains('x')",
    "p:lang(en)",
    "p:has(a)",
    "p:is(a)",
    "p:unknown",
    "\\31 23",
    'p[a="\'"]',
    "a, b",
    "p::text::text",
    "a::attr(href)::text",
    "::text",
    "div[",
    "::foo",
    "a::attr()",
    "li:nth-child(x)",
    "..",
    "a[href=",
    "",
    " ",
]


def lxml_verdict(css: str) -> bool:
    try:
        etree.XPath(xpath_of(css))
    except Exception:
        return False
    return True


@pytest.mark.parametrize("css", SELECTORS + CORNERS)
def test_a_css_selector_is_refused_exactly_when_lxml_would_refuse_its_xpath(css: str) -> None:
    assert (check_selector("html", css) is None) is lxml_verdict(css)


def test_an_xpath_selector_is_still_compiled_by_lxml() -> None:
    assert check_selector("html", "xpath://a/@href") is None
    assert "XPath selector" in (check_selector("html", "xpath://a[") or "")
