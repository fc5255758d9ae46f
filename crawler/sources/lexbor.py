"""The fast HTML path: Lexbor (through selectolax) parses the page and matches CSS selectors.

libxml2 (lxml) with cssselect's XPath costs about 2.5 ms for a 20-record page on an x86 core;
Lexbor does the same page in about 0.5 ms, which on a Pi 3 is most of a crawl's CPU. The results
are the parsel dialect's, exactly as the lxml path gives them, not Lexbor's own:

* `sel::text` gives each matched element's own text nodes; text separated only by a comment is
  one node (lxml's parser drops comments and joins the text around them);
* `sel::attr(name)` gives the attribute's value (`""` for a bare attribute, its name for a bare
  boolean one such as `disabled`, as libxml2 has it);
* a plain `sel` gives the element's whole text (comments left out, script text in), as lxml's
  `itertext()`;
* a page is parsed in no-quirks mode: libxml2 has no quirks mode, so `.Price` never matches
  `class="price"` there, and must not here either.

A selector is handed to Lexbor only when both engines provably match the same elements
(`compile_css` says which): type, class, id and attribute selectors, with descendant and child
combinators — and, for selectors evaluated inside an `items` element, no combinator at all,
because Lexbor, like the DOM's `querySelectorAll`, lets a combinator's left side match an
ancestor outside the element, where parsel's XPath (`descendant-or-self::…`) does not. Table
parts with a combinator stay with lxml (an HTML5 parser adds `<tbody>`), and so do attribute
values that HTML compares case-insensitively (`[type=text]`). Anything else (`xpath:`,
pseudo-classes, `+`/`~`, escapes) keeps the whole source on lxml: a page is parsed by one engine.

selectolax has no 32-bit ARM wheel: where it is not installed every source uses lxml, with the
same results. `tests/unit/test_lexbor_parity.py` checks every selector of the test suite on its
pages through both engines.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

# A selector's parsel pseudo-element, at its end: `::text` or `::attr(name)`.
_PSEUDO = re.compile(r"^(?P<css>.*?)(?:::(?:(?P<text>text)|attr\(\s*(?P<attr>[\w-]+)\s*\)))?\s*$")
_TABLE_PARTS = frozenset(
    {"table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption", "colgroup", "col"}
)
# Attributes whose values HTML matches case-insensitively in selectors (the HTML standard's
# list): Lexbor does, cssselect's XPath does not.
_CASELESS_ATTRS = frozenset(
    "accept accept-charset align alink axis bgcolor charset checked clear codetype color "  # noqa: SIM905
    "compact declare defer dir direction disabled enctype face frame hreflang http-equiv lang "
    "language link media method multiple nohref noresize noshade nowrap readonly rel rev rules "
    "scope scrolling selected shape target text type valign valuetype vlink".split()
)
# A bare one of these has its own name as value in libxml2 (`<input disabled>`: "disabled").
_BOOLEAN_ATTRS = frozenset(
    "checked compact declare defer disabled ismap multiple nohref noresize noshade nowrap "  # noqa: SIM905
    "readonly selected".split()
)
_OPERATORS = frozenset({"exists", "=", "~=", "|=", "^=", "$=", "*="})
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

Select = Callable[[Any], "list[str]"]

_AVAILABLE: list[bool] = []


def available() -> bool:
    """Whether selectolax (with Lexbor) is installed."""
    if not _AVAILABLE:
        try:
            import selectolax.lexbor  # noqa: F401
        except ImportError:
            _AVAILABLE.append(False)
        else:
            _AVAILABLE.append(True)
    return _AVAILABLE[0]


def _plain(tree: Any, relative: bool) -> bool:
    """Whether cssselect's parsed `tree` is in the subset both engines match alike."""
    from cssselect import parser as css

    if isinstance(tree, css.CombinedSelector):
        if relative or tree.combinator not in (" ", ">"):
            return False
        return _plain(tree.selector, relative) and _plain(tree.subselector, relative)
    if isinstance(tree, css.Element):
        # libxml2 drops the whitespace between the elements of <html> and <head>; HTML5 keeps
        # it as text: their text, and a bare `*` (which matches them), stay with lxml.
        return tree.namespace is None and (tree.element or "").lower() not in ("html", "head")
    if isinstance(tree, (css.Class, css.Hash)):
        return _plain(tree.selector, relative)
    if isinstance(tree, css.Attrib):
        if tree.namespace is not None or tree.operator not in _OPERATORS:
            return False
        if tree.operator != "exists":
            value = str(tree.value.value) if tree.value is not None else ""
            if tree.operator != "=" and (not value or (tree.operator == "~=" and " " in value)):
                return False  # cssselect and the CSS standard disagree on these
            if tree.attrib.lower() in _CASELESS_ATTRS and value.lower() != value.upper():
                return False
        return _plain(tree.selector, relative)
    return False  # pseudo-classes, negation, functions, namespaces: lxml


def _elements(tree: Any) -> list[str]:
    from cssselect import parser as css

    if isinstance(tree, css.CombinedSelector):
        return _elements(tree.selector) + _elements(tree.subselector)
    if isinstance(tree, css.Element):
        return [(tree.element or "*").lower()]
    return _elements(tree.selector) if hasattr(tree, "selector") else []


@functools.lru_cache(maxsize=512)  # asked once to choose the engine, once to compile
def compile_css(selector: str, relative: bool) -> Select | None:
    """`selector` (parsel's CSS dialect) as a function from a Lexbor node (or the parsed
    document) to its values as strings; None when the selector must stay with lxml.

    `relative`: the selector is evaluated inside an `items` element, not on the whole page."""
    if selector.startswith("xpath:") or "\\" in selector:
        return None
    m = _PSEUDO.match(selector)
    if m is None or not m.group("css").strip():
        return None
    query = m.group("css").strip()
    from cssselect import parse
    from cssselect import parser as css

    try:
        parsed = parse(query)
    except css.SelectorError:
        return None
    if len(parsed) != 1 or parsed[0].pseudo_element is not None:
        return None
    tree = parsed[0].parsed_tree
    subject = tree.subselector if isinstance(tree, css.CombinedSelector) else tree
    if isinstance(subject, css.Element) and subject.element is None:
        return None  # a bare `*` (see _plain)
    if not _plain(tree, relative):
        return None
    names = _elements(tree)
    if len(names) > 1 and _TABLE_PARTS.intersection(names):
        return None
    attr = m.group("attr")
    if m.group("text"):
        return lambda node: [t for el in node.css(query) for t in own_texts(el)]
    if attr is not None:
        return lambda node: _attributes(node.css(query), attr)
    return lambda node: [el.text(deep=True) for el in node.css(query)]


def own_texts(el: Any) -> list[str]:
    """The element's own text nodes as lxml has them: comments dropped, the text on either
    side of a comment joined into one node."""
    out: list[str] = []
    current: str | None = None
    for child in el.iter(include_text=True):
        tag = child.tag
        if tag == "-text":
            text = child.text_content
            current = text if current is None else current + text
        elif tag != "-comment" and current is not None:
            out.append(current)
            current = None
    if current is not None:
        out.append(current)
    return out


def _attributes(elements: Any, name: str) -> list[str]:
    bare = name if name in _BOOLEAN_ATTRS else ""
    out = []
    for el in elements:
        attrs = el.attributes
        if name in attrs:
            value = attrs[name]
            out.append(bare if value is None else value)
    return out


def parse(body: bytes, charset: str) -> Any:
    """The page as a Lexbor document, in no-quirks mode (see the module's docstring)."""
    from selectolax.lexbor import LexborHTMLParser

    text = body.decode(charset, errors="replace")
    if text.startswith("\ufeff"):  # a BOM is no text (libxml2 drops it too)
        text = text[1:]
    if "\x00" in text:  # HTML5 drops a NUL in text, libxml2 makes it U+FFFD: keep a trace
        text = text.replace("\x00", "\ufffd")
    # The first DOCTYPE decides the mode; a page's own one, now second, is ignored.
    return LexborHTMLParser("<!DOCTYPE html>" + text)


def is_empty(doc: Any) -> bool:
    """Whether the page has no element and no text of its own (whitespace, comments, a
    doctype): libxml2 gives no document at all for it."""
    body, head = doc.body, doc.head
    return (body is None or body.child is None) and (head is None or head.child is None)


def base_href(doc: Any) -> str | None:
    """The first `<base href>` of the page, as written."""
    el = doc.css_first("base[href]")
    return None if el is None else (el.attributes.get("href") or "")


def ld_json_scripts(doc: Any) -> list[str]:
    """The text of every `<script type="application/ld+json">` (type compared ASCII-caselessly,
    as the lxml path's XPath does)."""
    out = []
    for el in doc.css("script[type]"):
        kind = el.attributes.get("type") or ""
        if kind.translate(_ASCII_LOWER) == "application/ld+json":
            out.append(el.text(deep=True))
    return out
