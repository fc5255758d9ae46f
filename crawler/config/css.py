"""CSS selectors in parsel's dialect, translated to XPath on cssselect directly: the HTML rules of
cssselect's `HTMLTranslator`, plus the two pseudo-elements every scraping configuration uses,
`::text` (the element's own text nodes) and `::attr(name)` (an attribute's value).

parsel's own translator lives in a package whose `__init__` imports its Selector, w3lib and
more (~2 MiB of RSS the crawler never uses), and loading its module by file path broke whenever
parsel moved a file. This one needs only cssselect; tests/unit/test_css.py holds it to parsel's
output, selector for selector.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from cssselect import GenericTranslator, HTMLTranslator
from cssselect.parser import FunctionalPseudoElement
from cssselect.xpath import ExpressionError, XPathExpr, is_safe_name

if TYPE_CHECKING:  # typing.Self is 3.11's; the annotations are never evaluated
    from typing import Self


class _Expr(XPathExpr):
    """An XPath expression that may end in a text node or an attribute (a pseudo-element)."""

    textnode: bool = False
    attribute: str | None = None

    @classmethod
    def of(cls, xpath: XPathExpr, textnode: bool = False, attribute: str | None = None) -> _Expr:
        expr = cls(xpath.path, xpath.element, xpath.condition)
        expr.textnode, expr.attribute = textnode, attribute
        return expr

    def __str__(self) -> str:
        path = super().__str__()
        if self.textnode:
            # `*` alone (a bare `::text`) selects the context's own text nodes.
            if path == "*":
                return "text()"
            if path.endswith("::*/*"):  # `div *::text`: every text node below, not under `*`
                return path[:-3] + "text()"
            return path + "/text()"
        if self.attribute is not None:
            if path.endswith("::*/*"):
                path = path[:-2]
            if is_safe_name(self.attribute):
                return f"{path}/@{self.attribute}"
            return (
                f"{path}/attribute::*[name() = {GenericTranslator.xpath_literal(self.attribute)}]"
            )
        return path

    def join(self, combiner: str, other: XPathExpr) -> Self:
        # str(self) would end the left side in its own pseudo-element: it has none to end in.
        textnode, attribute = self.textnode, self.attribute
        self.textnode, self.attribute = False, None
        try:
            super().join(combiner, other)
        finally:
            self.textnode, self.attribute = textnode, attribute
        # The right-hand side's pseudo-element ends the whole path (`div > p::text`).
        if isinstance(other, _Expr):
            self.textnode, self.attribute = other.textnode, other.attribute
        return self


class _Translator(HTMLTranslator):
    """cssselect's HTML rules with `::text` and `::attr(name)`."""

    def xpath_element(self, selector: Any) -> XPathExpr:
        return _Expr.of(super().xpath_element(selector))

    def xpath_pseudo_element(self, xpath: XPathExpr, pseudo_element: Any) -> XPathExpr:
        if isinstance(pseudo_element, FunctionalPseudoElement):
            if pseudo_element.name.lower() != "attr":
                raise ExpressionError(
                    f"The functional pseudo-element ::{pseudo_element.name}() is unknown"
                )
            args = pseudo_element.arguments
            if len(args) != 1 or args[0].type not in ("IDENT", "STRING"):
                raise ExpressionError(
                    f"Expected a single string or ident for ::attr(), got {args!r}"
                )
            return _Expr.of(xpath, attribute=args[0].value)
        if pseudo_element.lower() != "text":
            raise ExpressionError(f"The pseudo-element ::{pseudo_element} is unknown")
        return _Expr.of(xpath, textnode=True)


_TRANSLATOR = _Translator()


@lru_cache(maxsize=512)
def css_to_xpath(selector: str) -> str:
    """The XPath (relative to the node it is applied to) of a CSS selector; raises cssselect's
    `SelectorError` (or `ExpressionError`) for one it cannot translate."""
    return str(_TRANSLATOR.css_to_xpath(selector, prefix="descendant-or-self::"))
