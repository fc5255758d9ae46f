"""What a reload changes (crawler/config/diff.py): sources by name, refused settings by key,
and the extraction fingerprint conditional GET keys its validators by."""

from __future__ import annotations

from pathlib import Path

from crawler.config.diff import diff, extraction_fingerprint
from crawler.config.root import load_config

BASE = """\
instance: pi-1
storage: {{dsn: "postgresql://crawler@nas/crawler"}}
fetch: {{concurrency: 4}}
sources:
{sources}
"""
QUOTES = """\
  - name: quotes
    every: 15m
    url: https://example.org/
    items: div.quote
    fields: {text: span.text::text}
"""


def load(tmp_path: Path, sources: str, name: str = "c.yaml", **replace: str) -> object:
    text = BASE.format(sources=sources)
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return load_config(path)


def test_sources_added_removed_changed_unchanged_by_name(tmp_path: Path) -> None:
    other = QUOTES.replace("quotes", "other")
    gone = QUOTES.replace("quotes", "gone")
    old = load(tmp_path, QUOTES + other + gone, "a.yaml")
    # Lines shift (a comment above), `other` changes its fields, `gone` goes, `new` comes.
    new = load(
        tmp_path,
        "  # a comment\n"
        + QUOTES
        + other.replace("span.text", "p.text")
        + gone.replace("gone", "new"),
        "b.yaml",
    )
    change = diff(old, new)  # type: ignore[arg-type]
    assert change.added == ("new",)
    assert change.removed == ("gone",)
    assert change.changed == ("other",)
    assert change.unchanged == ("quotes",)
    assert change.restart == ()


def test_settings_a_running_crawler_cannot_take_are_named_with_their_line(tmp_path: Path) -> None:
    old = load(tmp_path, QUOTES, "a.yaml")
    new = load(
        tmp_path,
        QUOTES,
        "b.yaml",
        **{"crawler@nas/crawler": "crawler@nas2/crawler", "concurrency: 4": "concurrency: 8"},
    )
    change = diff(old, new)  # type: ignore[arg-type]
    assert change.restart == ("storage.dsn", "fetch.concurrency")
    problems = [str(p) for p in change.restart_problems(str(tmp_path / "b.yaml"))]
    assert problems == [
        f"{tmp_path / 'b.yaml'}:2: storage.dsn: changed: restart to apply (a running crawler"
        " keeps its value)",
        f"{tmp_path / 'b.yaml'}:3: fetch.concurrency: changed: restart to apply (a running"
        " crawler keeps its value)",
    ]
    assert "nas2" not in "".join(problems)  # the value (a DSN) is never repeated


def test_log_level_reloads_and_instance_does_not(tmp_path: Path) -> None:
    old = load(tmp_path, QUOTES, "a.yaml")
    new = load(tmp_path, QUOTES, "b.yaml", **{"instance: pi-1": "log_level: DEBUG"})
    assert diff(old, new).restart == ("instance",)  # type: ignore[arg-type]


def test_the_fingerprint_follows_the_extraction_not_the_schedule(tmp_path: Path) -> None:
    def fingerprint(**replace: str) -> str:
        config = load(tmp_path, QUOTES, **replace)
        return extraction_fingerprint(config.sources[0])  # type: ignore[attr-defined]

    base = fingerprint()
    assert base == fingerprint()  # stable: the same on every load (and after a restart)
    assert fingerprint(**{"every: 15m": "every: 1h"}) == base
    assert fingerprint(**{"https://example.org/": "https://example.org/x"}) == base
    assert fingerprint(**{"div.quote": "div.q"}) != base
    assert fingerprint(**{"span.text": "p.text"}) != base
    assert fingerprint(**{"{text: span.text::text}": "{text: span.text::text, a: b::text}"}) != base
    assert fingerprint(**{"items: div.quote": "items: div.quote\n    key: [text]"}) != base


def test_the_first_render_source_needs_a_restart_for_its_browser(tmp_path: Path) -> None:
    browser = "browser: {executable: /usr/bin/chromium}\n"
    old = load(tmp_path, QUOTES, "a.yaml", **{"instance: pi-1\n": f"instance: pi-1\n{browser}"})
    rendering = QUOTES + "    render: {}\n"
    new = load(tmp_path, rendering, "b.yaml", **{"instance: pi-1\n": f"instance: pi-1\n{browser}"})
    assert diff(old, new).restart == ("sources.quotes.render",)  # type: ignore[arg-type]
    # A second one rides on the browser the first started.
    again = load(
        tmp_path,
        rendering + QUOTES.replace("quotes", "more") + "    render: {}\n",
        "c.yaml",
        **{"instance: pi-1\n": f"instance: pi-1\n{browser}"},
    )
    change = diff(new, again)  # type: ignore[arg-type]
    assert change.restart == () and change.added == ("more",)
