"""Selector syntax: CSS (parsel's dialect, crawler/config/css.py) or `xpath:` for HTML, JMESPath
for JSON.

Kept apart from extraction so the configuration can check a selector's syntax without importing
the extractor (no import circle), and so both compile a selector the same way. The parsing
libraries are imported on first use: `crawler check` on a config without selectors needs none.
"""

from __future__ import annotations


def xpath_of(selector: str) -> str:
    """The XPath of an HTML selector: `xpath:…` as written, CSS translated by parsel's dialect."""
    if selector.startswith("xpath:"):
        return selector[len("xpath:") :].strip()
    from crawler.config.css import css_to_xpath

    return css_to_xpath(selector)


def check_selector(parser: str, selector: str) -> str | None:
    """The reason `selector` does not compile for `parser`, or None when it does."""
    try:
        if parser == "json":
            import jmespath

            jmespath.compile(selector)
        elif selector.startswith("xpath:"):
            from lxml import etree

            etree.XPath(xpath_of(selector))
        else:
            # cssselect refuses what it cannot translate, and lxml compiles all it translates
            # (tests/unit/test_selectors.py): a CSS-only source on the Lexbor path never
            # imports lxml (~4 MiB of RSS).
            xpath_of(selector)
    except Exception as exc:  # each library raises its own syntax error types
        kind = (
            "JMESPath"
            if parser == "json"
            else ("XPath" if selector.startswith("xpath:") else "CSS")
        )
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"{kind} selector {selector!r} does not parse: {detail}"
    return None
