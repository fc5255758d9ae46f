"""Reading a configuration file: YAML with line marks, key declarations, one generic loader.

A configuration section is a frozen, keyword-only dataclass whose fields are declared with
`setting()` (a scalar: default, converter, doc), `secret()` (a value read from `<name>_env` or
`<name>_file`), `section()` (a nested mapping) or `items()` (a list, or a name → mapping table, of
nested sections). `load()` reads any such class from YAML, collecting every problem as
`FILE:LINE: key: message` instead of stopping at the first, suggesting a close key for an unknown
one, and then runs the class's optional `check()` for rules that span keys. So a key is declared
once — type, default, converter and doc in one place — and `docs/config.md`'s tables are made from
the same declarations (`python -m crawler.config.doc`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from crawler.config.convert import kind
from crawler.errors import ConfigProblem

T = TypeVar("T")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""The default of a key the user must give."""


# --------------------------------------------------------------------------- declarations


def setting(
    default: Any,
    convert: Callable[[Any], Any],
    doc: str,
    *,
    shown: str | None = None,
    yaml_name: str | None = None,
    factory: Callable[[], Any] | None = None,
    missing: str = "is required",
) -> Any:
    """A scalar key: its default (or REQUIRED), the converter of its YAML value, its doc line.

    `shown` is how the default reads in the docs when it is not a literal (e.g. "the host
    name"); `yaml_name` is the key in YAML when it cannot be the attribute's name; `missing` is
    the message when a REQUIRED key is absent.
    """
    meta = {
        "kind": "setting",
        "convert": convert,
        "doc": doc,
        "shown": shown,
        "yaml": yaml_name,
        "missing": missing,
    }
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    if default is REQUIRED:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def secret(doc: str) -> Any:
    """A secret read from the environment variable named by `<key>_env` or the file named by
    `<key>_file` (never from the YAML itself); None when neither is given. Hidden from repr."""
    meta = {"kind": "secret", "doc": doc}
    return dataclasses.field(default=None, repr=False, metadata=meta)


def section(cls: type[Any], doc: str, *, optional: bool = False) -> Any:
    """A nested mapping read into `cls`; when absent, `cls()`'s defaults (None if optional)."""
    meta = {"kind": "section", "cls": cls, "doc": doc, "optional": optional}
    if optional:
        return dataclasses.field(default=None, metadata=meta)
    return dataclasses.field(default_factory=cls, metadata=meta)


def entries(
    cls: type[Any],
    doc: str,
    *,
    by_name: str | None = None,
    shorthand: str | None = None,
    label: str | None = None,
    required: bool = False,
) -> Any:
    """A tuple of `cls` sections: from a YAML list, or with `by_name` from a mapping whose keys
    fill that attribute. `shorthand` names the attribute a bare scalar stands for
    (`title: h1::text` is `title: {selector: h1::text}`); `label` names the attribute used in
    problem keys (`sources.quotes.every` rather than `sources[0].every`)."""
    meta = {
        "kind": "items",
        "cls": cls,
        "doc": doc,
        "by_name": by_name,
        "shorthand": shorthand,
        "label": label,
        "required": required,
    }
    return dataclasses.field(default=(), metadata=meta)


items = entries  # the name used where no attribute called `items` shadows it


def derived() -> Any:
    """An attribute not read from YAML under its own name (the item name, the line)."""
    return dataclasses.field(default=None, metadata={"kind": "derived"})


def declared(cls: type[Any]) -> Iterator[tuple[dataclasses.Field[Any], dict[str, Any]]]:
    """The declared keys of a section class with their metadata, in declaration order."""
    for f in dataclasses.fields(cls):
        if f.metadata.get("kind") not in (None, "derived"):
            yield f, dict(f.metadata)


def yaml_key(f: dataclasses.Field[Any], meta: dict[str, Any]) -> str:
    return str(meta.get("yaml") or f.name)


# --------------------------------------------------------------------------- YAML with lines


class Map(dict[str, Any]):
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int = 0
    lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Map:
    loader.flatten_mapping(node)
    result = Map()
    result.line = node.start_mark.line + 1
    result.lines = {}
    for key_node, value_node in node.value:
        key = str(loader.construct_object(key_node, deep=True))
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _empty(line: int | None) -> Map:
    m = Map()
    m.line, m.lines = line or 0, {}
    return m


class Problems:
    """Every problem found in one file, in the order found."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.found: list[ConfigProblem] = []

    def add(self, line: int | None, key: str, message: str) -> None:
        self.found.append(ConfigProblem(self.file, line, key, message))

    def __len__(self) -> int:
        return len(self.found)

    def parse_yaml(self, text: str) -> Any:
        try:
            return yaml.load(text, Loader=_Loader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            self.add(
                mark.line + 1 if mark else None, "", f"YAML syntax: {exc.problem or exc.context}"
            )
        except yaml.YAMLError as exc:
            self.add(None, "", f"YAML syntax: {exc}")
        return None


# --------------------------------------------------------------------------- the loader


class Node:
    """One mapping of the file being read: its data, its dotted key, its lines."""

    def __init__(self, problems: Problems, data: Any, path: str, line: int | None) -> None:
        self.problems, self.path = problems, path
        if data is None:
            data = _empty(line)
        elif not isinstance(data, dict):
            problems.add(line, path, f"must be a mapping, not {kind(data)}")
            data = _empty(line)
        elif not isinstance(data, Map):  # built in code rather than read from a file
            data = Map(data)
            data.line, data.lines = line or 0, {}
        self.data: Map = data

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def line(self, dotted: str | None = None) -> int | None:
        """The line of a key (dotted keys walk nested mappings), else of this mapping."""
        found, data = self.data.line or None, self.data
        for name in (dotted or "").split(".") if dotted else ():
            if not isinstance(data, Map) or name not in data:
                break
            found = data.lines.get(name, found)
            data = data[name]
        return found

    def problem(self, dotted: str, message: str) -> None:
        self.problems.add(self.line(dotted), self.key(dotted) if dotted else self.path, message)


def load(cls: type[T], problems: Problems, data: Any, path: str, line: int | None) -> T | None:
    """Read one section class from YAML data; None (with problems recorded) when it is broken."""
    node = Node(problems, data, path, line)
    before = len(problems)
    values: dict[str, Any] = {}
    known: list[str] = []
    for f, meta in declared(cls):
        name = yaml_key(f, meta)
        kind_ = meta["kind"]
        if kind_ == "secret":
            known += [f"{name}_env", f"{name}_file"]
            values[f.name] = _read_secret(node, name)
            continue
        known.append(name)
        raw = node.data.get(name)
        if raw is None:
            if (
                kind_ == "setting"
                and f.default is dataclasses.MISSING
                and (f.default_factory is dataclasses.MISSING)
            ):
                node.problem(name, meta["missing"])
            elif kind_ == "items" and meta["required"]:
                node.problem(name, "needs at least one entry")
            continue
        if kind_ == "setting":
            try:
                values[f.name] = meta["convert"](raw)
            except (ValueError, TypeError) as exc:
                node.problem(name, str(exc))
        elif kind_ == "section":
            values[f.name] = load(meta["cls"], problems, raw, node.key(name), node.line(name))
        elif kind_ == "items":
            values[f.name] = _load_items(node, name, raw, meta)
    for name in node.data:
        if name not in known:
            import difflib  # only for a mistake: a valid configuration does without (RSS)

            hint = difflib.get_close_matches(name, known, n=1)
            more = f" (did you mean {hint[0]!r}?)" if hint else ""
            node.problem(name, f"unknown key{more}")
    if len(problems) > before:
        return None
    if any(f.name == "line" for f in dataclasses.fields(cls)):  # type: ignore[arg-type]
        values["line"] = node.line()
    obj = cls(**values)
    check: Callable[[], Iterable[tuple[str, str]]] | None = getattr(obj, "check", None)
    for dotted, message in check() if check else ():
        node.problem(dotted, message)
    return obj if len(problems) == before else None


def _load_items(node: Node, name: str, raw: Any, meta: dict[str, Any]) -> tuple[Any, ...]:
    cls, by_name, shorthand, label = meta["cls"], meta["by_name"], meta["shorthand"], meta["label"]
    if by_name:
        if not isinstance(raw, dict):
            node.problem(name, f"must be a mapping of names to entries, not {kind(raw)}")
            return ()
        entries = [
            (str(k), v, node.line(f"{name}.{k}"), f"{node.key(name)}.{k}") for k, v in raw.items()
        ]
    else:
        if not isinstance(raw, list):
            node.problem(name, f"must be a list, not {kind(raw)}")
            return ()
        entries = []
        for i, v in enumerate(raw):
            item_line = v.line if isinstance(v, Map) else node.line(name)
            tag = v.get(label) if label and isinstance(v, dict) else None
            where = (
                f"{node.key(name)}.{tag}"
                if isinstance(tag, str) and tag
                else f"{node.key(name)}[{i}]"
            )
            entries.append(("", v, item_line, where))
    if not entries and meta["required"]:
        node.problem(name, "needs at least one entry")
    out = []
    for item_name, value, item_line, where in entries:
        if shorthand and not isinstance(value, dict):
            if value is None or isinstance(value, list):
                node.problems.add(item_line, where, f"must be a {shorthand} or a mapping")
                continue
            value = {shorthand: value}
        loaded = load(cls, node.problems, value, where, item_line)
        if loaded is not None and by_name:
            loaded = dataclasses.replace(loaded, **{by_name: item_name})
        if loaded is not None:
            out.append(loaded)
    return tuple(out)


def _read_secret(node: Node, name: str) -> str | None:
    env_key, file_key = f"{name}_env", f"{name}_file"
    env_name, file_name = node.data.get(env_key), node.data.get(file_key)
    for key, value in ((env_key, env_name), (file_key, file_name)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            node.problem(key, f"must be a non-empty string, not {kind(value)}")
            return None
    if env_name and file_name:
        node.problem(file_key, f"use {env_key} or {file_key}, not both")
        return None
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            node.problem(env_key, f"environment variable {env_name} is not set")
        return value
    if file_name:
        from crawler.config.convert import path

        try:
            return path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            node.problem(file_key, f"cannot read {file_name}: {exc.strerror}")
    return None


def read_file(problems: Problems, file: str) -> Any:
    """The parsed YAML of `file` (None with a problem recorded when unreadable or malformed)."""
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(None, "", f"cannot read: {getattr(exc, 'strerror', None) or exc}")
        return None
    return problems.parse_yaml(text)
