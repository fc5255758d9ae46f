"""The layout shows the architecture (issue 23): packages by layer, importing downwards only, no
import circle, no module over 400 lines, each module with a docstring, each package's
`__init__.py` a docstring and nothing else (no re-exports: `crawler once` imports only what it
uses). The facts are read from the source by tests/layout.py; `python -m tests.layout` prints them.
"""

from __future__ import annotations

import ast

from tests import layout


def test_the_graph_is_read_from_the_real_package() -> None:
    g = layout.graph()
    # Not vacuous: the modules are there and their imports are seen (lazy ones included).
    assert len(g) > 60
    assert "crawler.fetch.transport" in g["crawler.fetch.client"]
    assert "crawler.storage.postgres" in g["crawler.storage.store"]  # inside make_store()


def test_no_import_circle_between_modules() -> None:
    assert layout.circles(layout.graph()) == []


def test_no_import_circle_between_packages() -> None:
    assert layout.circles(layout.package_graph(layout.graph())) == []


def test_packages_import_only_the_packages_below_them() -> None:
    assert list(layout.upward_imports(layout.graph())) == []


def test_the_checks_see_a_circle_and_an_upward_import() -> None:
    g = {"crawler.run.walk": {"crawler.run.pipeline"}, "crawler.run.pipeline": {"crawler.run.walk"}}
    assert layout.circles(g) == [["crawler.run.pipeline", "crawler.run.walk"]]
    up = {"crawler.config.root": {"crawler.fetch.request"}, "crawler.fetch.request": set()}
    assert list(layout.upward_imports(up)) == [("crawler.config.root", "crawler.fetch.request")]


def test_no_module_over_400_lines() -> None:
    counts = layout.line_counts()
    assert {m: n for m, n in counts.items() if n > layout.MAX_LINES} == {}


def test_every_module_says_what_it_owns_and_packages_hold_only_that() -> None:
    for name, path in layout.modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{name} has no docstring"
        if path.name == "__init__.py" and name != "crawler":
            assert len(tree.body) == 1, f"{path} holds more than its docstring"


# The logger names before the move (issue 23): users' Loki queries, dashboards and alert rules
# select on them, so they stay whatever a module's path becomes.
LOGGERS = {
    "crawler.breaker",
    "crawler.cli",
    "crawler.export",
    "crawler.exposition",
    "crawler.fetch",
    "crawler.fields",
    "crawler.httpstate",
    "crawler.lease",
    "crawler.pipeline",
    "crawler.quarantine",
    "crawler.retention",
    "crawler.robots",
    "crawler.schedule",
    "crawler.service",
    "crawler.sink",
    "crawler.store",
    "crawler.systemd",
}


def test_logger_names_do_not_follow_module_paths() -> None:
    found: set[str] = set()
    for name, path in layout.modules().items():
        # A module's own logger: `log = logging.getLogger(...)` at module level.
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Attribute)
                and node.value.func.attr == "getLogger"
            ):
                (arg,) = node.value.args
                assert isinstance(arg, ast.Constant), f"{name}: a logger named by an expression"
                found.add(arg.value)
    assert found >= LOGGERS
    # New loggers are named like the old ones: `crawler.<concept>`, not a module path.
    assert all(n.count(".") == 1 and n.startswith("crawler.") for n in found), sorted(found)
