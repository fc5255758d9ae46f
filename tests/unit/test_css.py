"""crawler/config/css.py translates CSS in parsel's dialect on cssselect alone: its XPath must be
parsel's own, selector for selector, refusals included (the parity the extraction tests and the
Lexbor path rely on)."""

from __future__ import annotations

import pytest
from parsel.csstranslator import css2xpath

from crawler.config.css import css_to_xpath
from tests.unit.test_lexbor_parity import SELECTORS
from tests.unit.test_selectors import CORNERS

# The pseudo-elements' own corners: after a combinator, after `*`, after a pseudo-class, an
# attribute name XPath cannot write as `@name`.
MORE = [
    "div > p::text",
    "ul > li a::attr(href)",
    "div *::text",
    "div *::attr(href)",
    "div *::attr('a b')",
    "*::text",
    "li:nth-child(2n+1)::text",
    "a::attr(href)::text",
    "p::TEXT",
    "a::ATTR(href)",
    "a::attr(1)",
    "a::attr(x, y)",
    "a::other(x)",
]


def translated(translate: object, css: str) -> str:
    try:
        return str(translate(css))  # type: ignore[operator]
    except Exception as exc:  # the refusal's class is part of the dialect
        return f"refused: {type(exc).__name__}"


@pytest.mark.parametrize("css", SELECTORS + CORNERS + MORE)
def test_the_xpath_is_parsels(css: str) -> None:
    assert translated(css_to_xpath, css) == translated(css2xpath, css)


def test_crawler_never_loads_parsels_translator_module() -> None:
    import sys

    css_to_xpath("p::text")
    assert "crawler._parsel_csstranslator" not in sys.modules
