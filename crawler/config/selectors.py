"""Selector syntax: CSS (parsel's dialect) or `xpath:` for HTML, JMESPath for JSON.

Kept apart from extraction so the configuration can check a selector's syntax without importing
the extractor (no import circle), and so both compile a selector the same way. The parsing
libraries are imported on first use: `crawler check` on a config without selectors needs none.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def xpath_of(selector: str) -> str:
    """The XPath of an HTML selector: `xpath:…` as written, CSS translated by parsel's dialect."""
    if selector.startswith("xpath:"):
        return selector[len("xpath:") :].strip()
    return str(_css2xpath()(selector))


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


def _css2xpath() -> Callable[[str], Any]:
    """parsel's `css2xpath`, loaded without running `parsel/__init__.py`.

    The package's __init__ also imports its Selector, w3lib, jmespath, urllib.request,
    http.client and email: ~2 MiB of RSS the crawler never uses (it compiles selectors to lxml
    XPath itself), while `parsel/csstranslator.py` needs only cssselect. It is loaded under a
    name of ours, so a later `import parsel` (the benchmark's floor, a test) is not affected.
    """
    module = sys.modules.get(_TRANSLATOR)
    if module is None:
        package = importlib.util.find_spec("parsel")  # a top-level spec: nothing is run
        assert package is not None and package.submodule_search_locations
        path = Path(package.submodule_search_locations[0]) / "csstranslator.py"
        spec = importlib.util.spec_from_file_location(_TRANSLATOR, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[_TRANSLATOR] = module
    return module.css2xpath  # type: ignore[no-any-return]


_TRANSLATOR = "crawler._parsel_csstranslator"
