"""What a reload changes: sources added, removed, changed or unchanged, and refused settings.

A running crawler takes a new configuration file's `sources` (and `log_level`); every other
setting (the store, the state directory, the listener, the instance name, the fetch limits the
HTTP client was built with, …) is fixed for the process's life, so a file that changes one is
refused as a whole, each such key named with "restart to apply", as one problem per key in the
`FILE:LINE: key: message` form of `crawler check`.

`extraction_fingerprint()` names a source's extraction definition (parser, items, fields, key,
…): conditional-GET validators recorded under one definition do not spare a page's extraction
under another (crawler.fetch.httpstate).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from crawler.config.loader import Node, Problems, read_file
from crawler.config.root import Config
from crawler.config.sources import SourceConfig
from crawler.errors import ConfigProblem

# Top-level keys a running crawler takes from a reloaded file; `path` is derived, not a key.
RELOADABLE = frozenset({"sources", "log_level", "path"})
RESTART = "changed: restart to apply (a running crawler keeps its value)"

# The keys of a source that decide what a page's records are: a change re-extracts its pages.
EXTRACTION_KEYS = ("parser", "items", "html_engine", "fields", "key", "timezone", "follow")


@dataclass(frozen=True)
class ConfigDiff:
    """Source names by what a reload does to them, and the settings that refuse it."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()  # dotted keys whose change needs a restart

    def restart_problems(self, file: str) -> list[ConfigProblem]:
        """One `FILE:LINE: key: restart to apply` problem per refused key, lines from `file`."""
        problems = Problems(file)
        node = Node(problems, read_file(problems, file), "", 1)
        return [ConfigProblem(file, node.line(key), key, RESTART) for key in self.restart]


def diff(old: Config, new: Config) -> ConfigDiff:
    """What loading `new` over the running `old` does (sources compared without their lines)."""
    before = {s.name: s for s in old.sources}
    after = {s.name: s for s in new.sources}
    changed: list[str] = []
    unchanged: list[str] = []
    for name in after.keys() & before.keys():
        same = _canonical(before[name]) == _canonical(after[name])
        (unchanged if same else changed).append(name)
    restart = [
        key
        for f in dataclasses.fields(Config)
        if f.name not in RELOADABLE
        for key in _changed_keys(getattr(old, f.name), getattr(new, f.name), f.name)
    ]
    # The browser starts with the process only when a source renders: the first `render`
    # source needs a restart to get one.
    if new.renders and not old.renders:
        restart += [f"sources.{s.name}.render" for s in new.sources if s.render is not None]
    return ConfigDiff(
        added=tuple(n for n in after if n not in before),
        removed=tuple(n for n in before if n not in after),
        changed=tuple(sorted(changed)),
        unchanged=tuple(sorted(unchanged)),
        restart=tuple(restart),
    )


def _changed_keys(old: Any, new: Any, key: str) -> Iterator[str]:
    """The dotted keys whose values differ, down to the leaves of nested sections."""
    if dataclasses.is_dataclass(old) and type(old) is type(new):
        for f in dataclasses.fields(old):
            yield from _changed_keys(getattr(old, f.name), getattr(new, f.name), f"{key}.{f.name}")
    elif _canonical(old) != _canonical(new):
        yield key


def extraction_fingerprint(source: SourceConfig) -> str:
    """A short, stable name of the source's extraction definition (same across restarts)."""
    definition = repr(tuple((k, _canonical(getattr(source, k))) for k in EXTRACTION_KEYS))
    return hashlib.blake2b(definition.encode(), digest_size=8).hexdigest()


def _canonical(value: Any) -> Any:
    """A comparable, reproducible form of a configuration value: sections without the line
    they were read from, regexes by their text and flags."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            tuple(
                (f.name, _canonical(getattr(value, f.name)))
                for f in dataclasses.fields(value)
                if f.name != "line"
            ),
        )
    if isinstance(value, (tuple, list)):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _canonical(v)) for k, v in value.items()))
    if isinstance(value, re.Pattern):
        return ("re", value.pattern, value.flags)
    return repr(value)
