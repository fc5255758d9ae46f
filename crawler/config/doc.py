"""docs/config.md's key tables, made from the declarations in `crawler/config/`.

A table stands between `<!-- keys: PATH -->` and `<!-- /keys -->`, where PATH is a dotted path
of sections from the top (`storage`, `fetch`, `sources`, `sources.fields`; empty for the top
level). A nested section is flattened into its parent's table (`retry.attempts`) unless it has a
table of its own. So a key's doc is written once, beside its declaration, and the reference
cannot drift from the code: `tests/unit/test_config.py` fails when the file is stale.

    python -m crawler.config.doc            # rewrite docs/config.md in place
    python -m crawler.config.doc --check    # exit 1 when it is stale
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crawler.config import convert as cv
from crawler.config.loader import declared, yaml_key
from crawler.config.root import Config

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"
_TABLE = re.compile(r"(<!-- keys: *([\w.]*) *-->\n).*?(<!-- /keys -->)", re.DOTALL)


def section_class(path: str) -> type[Any]:
    """The declared class at a dotted path of sections and entry lists."""
    cls: type[Any] = Config
    for name in filter(None, path.split(".")):
        for f, meta in declared(cls):
            if yaml_key(f, meta) == name and meta["kind"] in ("section", "items"):
                cls = meta["cls"]
                break
        else:
            raise KeyError(f"no section {name!r} in {path!r}")
    return cls


def shown_default(f: dataclasses.Field[Any], meta: dict[str, Any]) -> str:
    if meta.get("shown"):
        return str(meta["shown"])
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        return "required"
    value: Any = f.default
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if meta.get("convert") in (cv.duration, cv.positive_duration):
        return f"`{_duration(float(value))}`"
    if meta.get("convert") is cv.size:
        return f"`{_size(int(value))}`"
    return f"`{value}`"


def _duration(seconds: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= n and seconds % n == 0:
            return f"{int(seconds // n)}{unit}"
    return f"{int(seconds * 1000)}ms" if seconds else "0"


def _size(n: int) -> str:
    for unit, k in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n % k == 0:
            return f"{n // k}{unit}"
    return str(n)


def rows(cls: type[Any], prefix: str, own_tables: set[str], path: str) -> Iterator[str]:
    for f, meta in declared(cls):
        name = yaml_key(f, meta)
        doc = " ".join(str(meta["doc"]).split()).replace("|", "\\|")
        kind = meta["kind"]
        sub = f"{path}.{name}" if path else name
        if kind == "section" and sub not in own_tables:
            yield from rows(meta["cls"], f"{prefix}{name}.", own_tables, sub)
        elif kind == "secret":
            yield f"| `{prefix}{name}_env` / `{prefix}{name}_file` | none | {doc} |"
        elif kind in ("section", "items"):
            yield f"| `{prefix}{name}` | see below | {doc} |"
        else:
            yield f"| `{prefix}{name}` | {shown_default(f, meta)} | {doc} |"


def render(text: str) -> str:
    """The document with every key table made anew from the declarations."""
    own_tables = {m.group(2) for m in _TABLE.finditer(text)}

    def table(m: re.Match[str]) -> str:
        path = m.group(2)
        body = "\n".join(rows(section_class(path), "", own_tables, path))
        return f"{m.group(1)}| key | default | meaning |\n| --- | --- | --- |\n{body}\n{m.group(3)}"

    return _TABLE.sub(table, text)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = DOC.read_text(encoding="utf-8")
    new = render(text)
    if "--check" in args:
        if new != text:
            print(f"{DOC} is stale: run `python -m crawler.config.doc`", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
