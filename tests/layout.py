"""The package's layout as data: every module's imports of `crawler` modules, read from the source
with `ast` (nothing is imported), and the checks issue 23 asks for — no import circle between
modules, packages importing only the packages below them, no module over 400 lines, a docstring on
every module and nothing else in a package's `__init__.py`.

`python -m tests.layout` prints the figures (modules, largest, circles) for a closing note.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "crawler"
MAX_LINES = 400

# Top to bottom: a module may import from its own layer and from the layers below it only.
# `crawler/` itself holds the command line at the top, the service (the parts started in order,
# which `crawler once` uses too) under the commands, and the shared leaves at the bottom.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("crawler.cli", "crawler.__main__"),
    ("crawler.commands",),
    ("crawler.service",),
    ("crawler.run",),
    ("crawler.render",),
    ("crawler.sources",),
    ("crawler.fetch",),
    ("crawler.storage",),
    ("crawler.observability",),
    ("crawler.config",),
    (
        "crawler.errors",
        "crawler.lifecycle",
        "crawler.record",
        "crawler.storable",
        "crawler.backoff",
        "crawler.sqlite",
        "crawler",
    ),
)


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The `crawler` modules `name` imports, wherever the import stands (a function's body or
    `if TYPE_CHECKING:` included: a circle through a lazy or type-only import is still a circle)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("crawler"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("crawler"):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    out.discard(name)
    return {m for m in out if m in known}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def layer_of(module: str) -> int:
    best = -1, 0
    for rank, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[1]:
                best = rank, len(prefix)
    if best[0] < 0:
        raise LookupError(f"{module} is in no layer: add its package to tests/layout.py LAYERS")
    return best[0]


def package_of(module: str) -> str:
    """The package a module belongs to for the package-level checks; `crawler/`'s own modules
    count as one group per layer (`crawler:0` the command line, …, the leaves last)."""
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()):
        return ".".join(parts[:2])
    return f"crawler:{layer_of(module)}"


def upward_imports(g: dict[str, set[str]]) -> Iterator[tuple[str, str]]:
    """(importer, imported) pairs where a module imports from a layer above its own."""
    for src, targets in sorted(g.items()):
        for dst in sorted(targets):
            if layer_of(dst) < layer_of(src):
                yield src, dst


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def package_graph(g: dict[str, set[str]]) -> dict[str, set[str]]:
    pg: dict[str, set[str]] = {}
    for src, targets in g.items():
        a = package_of(src)
        pg.setdefault(a, set()).update(package_of(t) for t in targets if package_of(t) != a)
    return pg


def line_counts() -> dict[str, int]:
    return {
        name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()
    }


def main() -> None:
    g = graph()
    counts = line_counts()
    largest = max(counts, key=lambda m: counts[m])
    print(f"modules: {len(counts)} (packages: {len(package_graph(g))})")
    print(f"largest: {largest} {counts[largest]} lines")
    print(f"modules over {MAX_LINES} lines: {sum(n > MAX_LINES for n in counts.values())}")
    print(f"module circles: {circles(g)}")
    print(f"package circles: {circles(package_graph(g))}")
    print(f"upward imports: {list(upward_imports(g))}")


if __name__ == "__main__":
    main()
