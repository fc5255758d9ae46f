"""A reader for the subset of Grafana Alloy's configuration syntax that alloy/config.alloy uses.

No Alloy binary can be had here (no Debian, PyPI or npm package ships one), so the tests read the
file with this parser: blocks (`name "label" { ... }`), attributes (`key = value`), strings,
numbers, booleans, lists, objects, and references or calls kept as their text. A syntax error
raises ValueError with the line. `promtail_stages` turns a `loki.process` pipeline into the
Promtail pipeline it is ported from, so the real Promtail can run the Alloy pipeline's stages.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(
    r'\s+|//[^\n]*|(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?)'
    r"|(?P<ident>[A-Za-z_][\w.]*)|(?P<punct>[{}\[\]()=,+])"
)


@dataclass(frozen=True)
class Ref:
    """A reference or expression kept as text, e.g. `discovery.relabel.containers.output`."""

    text: str


@dataclass
class Block:
    name: str
    label: str | None
    attrs: dict[str, Any] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)

    def find(self, name: str) -> list[Block]:
        return [b for b in self.blocks if b.name == name]


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            line = text.count("\n", 0, pos) + 1
            raise ValueError(f"line {line}: unexpected {text[pos : pos + 20]!r}")
        if m.lastgroup:
            out.append((m.lastgroup, m.group(), text.count("\n", 0, pos) + 1))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, k: int = 0) -> tuple[str, str, int]:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eof", "", -1)

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        tk, tv, line = self.peek()
        if (value is not None and tv != value) or (kind is not None and tk != kind):
            raise ValueError(f"line {line}: expected {value or kind}, got {tv!r}")
        self.i += 1
        return tv

    def body(self, end: str) -> Block:
        block = Block("", None)
        while self.peek()[1] != end:
            name = self.take(kind="ident")
            if self.peek()[1] == "=":
                self.take("=")
                block.attrs[name] = self.expr()
            else:
                label = json.loads(self.take(kind="str")) if self.peek()[0] == "str" else None
                self.take("{")
                inner = self.body("}")
                self.take("}")
                block.blocks.append(Block(name, label, inner.attrs, inner.blocks))
        return block

    def expr(self) -> Any:
        value = self.term()
        while self.peek()[1] == "+":
            self.take("+")
            value = Ref(f"{_text(value)} + {_text(self.term())}")
        return value

    def term(self) -> Any:
        kind, value, line = self.peek()
        if kind == "str":
            self.i += 1
            return json.loads(value)
        if kind == "num":
            self.i += 1
            return float(value) if "." in value else int(value)
        if value == "[":
            self.take("[")
            items = []
            while self.peek()[1] != "]":
                items.append(self.expr())
                if self.peek()[1] == ",":
                    self.take(",")
            self.take("]")
            return items
        if value == "{":
            self.take("{")
            obj: dict[str, Any] = {}
            while self.peek()[1] != "}":
                key = self.take()
                obj[json.loads(key) if key.startswith('"') else key] = (
                    self.take("="),
                    self.expr(),
                )[1]
                if self.peek()[1] == ",":
                    self.take(",")
            self.take("}")
            return obj
        if kind == "ident":
            self.i += 1
            if value in ("true", "false"):
                return value == "true"
            if self.peek()[1] == "(":
                self.take("(")
                args = []
                while self.peek()[1] != ")":
                    args.append(_text(self.expr()))
                    if self.peek()[1] == ",":
                        self.take(",")
                self.take(")")
                return Ref(f"{value}({', '.join(args)})")
            return Ref(value)
        raise ValueError(f"line {line}: unexpected {value!r}")


def _text(value: Any) -> str:
    return value.text if isinstance(value, Ref) else json.dumps(value)


def parse(text: str) -> list[Block]:
    """The top-level blocks of an Alloy configuration."""
    parser = _Parser(text)
    top = parser.body("")
    return top.blocks


def component(blocks: list[Block], name: str, label: str) -> Block:
    found = [b for b in blocks if b.name == name and b.label == label]
    assert len(found) == 1, f"{name} {label!r}: {len(found)} definitions"
    return found[0]


def _null_if_empty(values: dict[str, str]) -> dict[str, str | None]:
    # Alloy writes `level = ""` where Promtail's YAML writes `level:` (same name).
    return {k: (v or None) for k, v in values.items()}


def promtail_stages(process: Block) -> list[dict[str, Any]]:
    """The Promtail pipeline that a `loki.process` block's stages are ported from."""
    out: list[dict[str, Any]] = []
    for stage in process.blocks:
        kind = stage.name.removeprefix("stage.")
        a = stage.attrs
        if kind == "json":
            out.append({"json": {"expressions": a["expressions"]}})
        elif kind == "logfmt":
            out.append({"logfmt": {"mapping": _null_if_empty(a["mapping"])}})
        elif kind == "labels":
            out.append({"labels": _null_if_empty(a["values"])})
        elif kind in ("timestamp", "template"):
            out.append({kind: dict(a)})
        elif kind == "match":
            inner = promtail_stages(Block(stage.name, None, {}, stage.blocks))
            out.append({"match": {"selector": a["selector"], "stages": inner}})
        else:
            raise AssertionError(f"no Promtail equivalent known for {stage.name}: add it here")
    return out
