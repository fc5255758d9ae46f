"""Config: valid files load into typed objects; every broken file gets FILE:LINE: key: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.config.convert import duration, expand_urls, size
from crawler.config.root import load_config
from crawler.errors import ConfigError
from tests.crawler_proc import run_cli

GOOD = """\
instance: pi-1
state_dir: var
metrics: {listen: "0.0.0.0:9500"}
storage:
  dsn: postgresql://crawler@nas:5432/crawler
  password_env: TEST_DB_PASSWORD
fetch:
  concurrency: 4
  max_response_bytes: 2MiB
  retry: {attempts: 2, base: 250ms}
sources:
  - name: quotes
    every: 15m
    jitter: 30s
    urls: ["https://example.org/page/{1..3}", "https://example.org/extra"]
    items: div.quote
    fields:
      text: span.text::text
      tags: {selector: "a.tag::text", all: true}
    key: [text]
  - name: api
    cron: "*/5 * * * *"
    url: https://example.org/api.json
    parser: json
    items: data[*]
    fields: {id: id, title: attributes.title}
    key: id
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "crawler.yaml"
    p.write_text(text)
    return p


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return [str(p) for p in info.value.problems]


def test_good_config_loads_into_typed_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TEST_DB_PASSWORD", "s3cret")
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.instance == "pi-1"
    assert (cfg.metrics.host, cfg.metrics.port) == ("0.0.0.0", 9500)
    assert cfg.storage.backend == "postgres" and cfg.storage.password == "s3cret"
    assert "s3cret" not in repr(cfg.storage)
    assert cfg.fetch.max_response_bytes == 2 * 2**20 and cfg.fetch.retry.base == 0.25
    quotes, api = cfg.sources
    assert quotes.urls == (
        "https://example.org/page/1",
        "https://example.org/page/2",
        "https://example.org/page/3",
        "https://example.org/extra",
    )
    assert quotes.every == 900 and quotes.jitter == 30 and quotes.key == ("text",)
    assert quotes.fields[1].all is True
    assert api.cron == "*/5 * * * *" and api.key == ("id",) and api.parser == "json"
    assert cfg.spool.path == tmp_path / "var" / "spool.sqlite"


def test_password_from_file(tmp_path: Path):
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    text = GOOD.replace("password_env: TEST_DB_PASSWORD", f"password_file: {secret}")
    assert load_config(write(tmp_path, text)).storage.password == "from-file"


def test_no_dsn_means_embedded_sqlite(tmp_path: Path):
    text = "sources:\n  - name: a\n    every: 1m\n    url: http://x.test/\n    fields: {t: title::text}\n"
    cfg = load_config(write(tmp_path, text))
    assert cfg.storage.backend == "sqlite"
    assert cfg.storage.sqlite_path == tmp_path / "var" / "crawler.sqlite"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sources: [\n  {name: a\n", "crawler.yaml:3: YAML syntax"),
        (
            GOOD.replace("  concurrency: 4", "  concurency: 4"),
            "crawler.yaml:8: fetch.concurency: unknown key (did you mean 'concurrency'?)",
        ),
        (
            GOOD.replace('cron: "*/5 * * * *"', 'cron: "61 * * * *"'),
            "crawler.yaml:22: sources.api.cron: '61 * * * *' is not a valid cron expression",
        ),
        (
            GOOD.replace('cron: "*/5 * * * *"', 'cron: "* * *"'),
            "crawler.yaml:22: sources.api.cron: '* * *' must have 5 fields",
        ),
        (
            GOOD.replace("span.text::text", "span..text[["),
            "crawler.yaml:18: sources.quotes.fields.text: CSS selector 'span..text[[' does not parse",
        ),
        (
            GOOD.replace("items: data[*]", "items: data[*"),
            "crawler.yaml:25: sources.api.items: JMESPath selector 'data[*' does not parse",
        ),
        (
            GOOD.replace("  - name: quotes\n", "  - every: 1h\n").replace(
                "    every: 15m\n", "", 1
            ),
            "crawler.yaml:12: sources[0].name: every source needs a name",
        ),
        (
            GOOD.replace("every: 15m", "every: soon"),
            "crawler.yaml:13: sources.quotes.every: 'soon' is not a duration",
        ),
        (
            GOOD.replace("key: [text]", "key: [nope]"),
            "crawler.yaml:20: sources.quotes.key: 'nope' is not one of the fields",
        ),
        (
            GOOD.replace("name: api", "name: quotes"),
            "sources.quotes: duplicate source name (first at line 12)",
        ),
        (
            GOOD.replace("crawler@nas", "crawler:hunter2@nas"),
            "crawler.yaml:5: storage.dsn: must not contain a password",
        ),
        (
            GOOD.replace("0.0.0.0:9500", "nowhere"),
            "crawler.yaml:3: metrics.listen: 'nowhere' is not HOST:PORT",
        ),
        (GOOD + "sources: []\n", "crawler.yaml:28: YAML syntax: duplicate key 'sources'"),
    ],
    ids=[
        "yaml",
        "unknown-key",
        "bad-cron",
        "cron-fields",
        "bad-css",
        "bad-jmespath",
        "no-name",
        "bad-duration",
        "bad-key",
        "duplicate-source",
        "password-in-dsn",
        "bad-listen",
        "duplicate-key",
    ],
)
def test_broken_config_names_file_line_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
):
    monkeypatch.setenv("TEST_DB_PASSWORD", "x")
    found = problems(tmp_path, text)
    assert any(expected in p for p in found), found
    assert all(p.startswith(str(tmp_path / "crawler.yaml")) for p in found)


def test_missing_env_secret_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TEST_DB_PASSWORD", raising=False)
    found = problems(tmp_path, GOOD)
    assert any(
        "storage.password_env: environment variable TEST_DB_PASSWORD is not set" in p for p in found
    ), found


def test_every_problem_is_reported_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TEST_DB_PASSWORD", "x")
    text = GOOD.replace("every: 15m", "every: soon").replace("  concurrency: 4", "  concurency: 4")
    assert len(problems(tmp_path, text)) == 2


@pytest.mark.parametrize(
    "text",
    [
        "sources: [\n  {name: a\n",
        GOOD.replace("name: quotes", "name: 'bad name!'"),
        "just a string\n",
        "",
        "sources:\n  - 42\n",
        GOOD.replace("every: 15m", "every: [1]"),
    ],
)
def test_cli_check_prints_one_line_per_problem_and_no_traceback(tmp_path: Path, text: str):
    path = write(tmp_path, text)
    proc = run_cli("check", "-c", str(path), env={"TEST_DB_PASSWORD": "x", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and all(line.startswith(f"{path}:") for line in lines), lines


def test_cli_check_ok(tmp_path: Path):
    proc = run_cli("check", "-c", "examples/crawler.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "ok (4 sources, storage sqlite)" in proc.stdout


def test_cli_check_missing_file(tmp_path: Path):
    proc = run_cli("check", "-c", str(tmp_path / "no"))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{tmp_path / 'no'}: cannot read")


def test_value_parsers():
    assert duration("500ms") == 0.5 and duration("2h") == 7200 and duration(3) == 3.0
    assert size("512KiB") == 512 * 1024 and size("1GB") == 10**9 and size(100) == 100
    assert expand_urls("http://h/{1..3}/{a}") == [
        "http://h/1/{a}",
        "http://h/2/{a}",
        "http://h/3/{a}",
    ]
    assert expand_urls("http://h/{01..03}") == ["http://h/01", "http://h/02", "http://h/03"]
    assert expand_urls("http://h/{0..20..10}?p={1..2}") == [
        "http://h/0?p=1",
        "http://h/0?p=2",
        "http://h/10?p=1",
        "http://h/10?p=2",
        "http://h/20?p=1",
        "http://h/20?p=2",
    ]
    with pytest.raises(ValueError, match="more than"):
        expand_urls("http://h/{1..1000}/{1..1000}")


# --------------------------------------------------------------------------- the generic loader


def test_docs_config_tables_are_made_from_the_declarations():
    from crawler.config import doc as configdoc

    text = configdoc.DOC.read_text(encoding="utf-8")
    assert configdoc.render(text) == text, (
        "docs/config.md is stale: run python -m crawler.config.doc"
    )


def test_every_declared_key_has_a_doc_line():
    import dataclasses

    from crawler.config.loader import declared
    from crawler.config.root import Config

    def walk(cls: type) -> list[str]:
        out = []
        for f, meta in declared(cls):
            assert meta["doc"].strip(), f"{cls.__name__}.{f.name} has no doc"
            if meta["kind"] in ("section", "items"):
                out += walk(meta["cls"])
            out.append(f.name)
        return out

    assert len(walk(Config)) > 40
    assert dataclasses.is_dataclass(Config)


def test_one_declaration_is_a_whole_key(tmp_path: Path):
    """Any declared class loads: defaults, converters, required keys, sections, named entries,
    shorthand, cross-key checks and unknown-key hints, each problem with its line."""
    from dataclasses import dataclass

    from crawler.config import convert as cv
    from crawler.config.loader import REQUIRED, Problems, derived, entries, load, section, setting

    @dataclass(frozen=True, kw_only=True)
    class Part:
        name: str = derived()
        selector: str = setting(REQUIRED, cv.string, "where")
        repeat: int = setting(1, cv.positive_int, "how often")

    @dataclass(frozen=True, kw_only=True)
    class Inner:
        wait: float = setting(2.0, cv.duration, "a wait")

    @dataclass(frozen=True, kw_only=True)
    class Outer:
        size: int = setting(REQUIRED, cv.size, "a size")
        inner: Inner = section(Inner, "nested")
        parts: tuple[Part, ...] = entries(Part, "named parts", by_name="name", shorthand="selector")

        def check(self):
            if self.size < 10:
                yield "size", "must be at least 10 bytes"

    problems = Problems("f.yaml")
    data = problems.parse_yaml(
        "size: 1KiB\ninner: {wait: 500ms}\nparts:\n  a: x\n  b: {selector: y, repeat: 3}\n"
    )
    got = load(Outer, problems, data, "", 1)
    assert not problems.found
    assert got == Outer(
        size=1024,
        inner=Inner(wait=0.5),
        parts=(Part(name="a", selector="x"), Part(name="b", selector="y", repeat=3)),
    )

    problems = Problems("f.yaml")
    data = problems.parse_yaml("size: 5\ninner:\n  wiat: 1s\nparts:\n  a: {repeat: 0}\n")
    assert load(Outer, problems, data, "", 1) is None
    assert [str(p) for p in problems.found] == [
        "f.yaml:3: inner.wiat: unknown key (did you mean 'wait'?)",
        "f.yaml:5: parts.a.selector: is required",
        "f.yaml:5: parts.a.repeat: must be greater than zero",
    ]

    problems = Problems("f.yaml")
    assert load(Outer, problems, problems.parse_yaml("size: 5\n"), "", 1) is None
    assert [str(p) for p in problems.found] == ["f.yaml:1: size: must be at least 10 bytes"]
