"""Log formats: console lines on a terminal, JSON lines in a pipe (the contract), chosen
automatically by `log_format: auto`; colour only where the terminal can show it."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from pathlib import Path

import pytest

from crawler.observability.logs import ConsoleFormatter, resolve_format, setup_logging
from tests import terminal

# A process that logs what a source run logs, with the format chosen as `crawler` chooses it.
SNIPPET = """
import logging, sys
from crawler.observability.logs import setup_logging
chosen = setup_logging("INFO", instance="pi3", fmt=sys.argv[1])
log = logging.getLogger("crawler.pipeline")
log.info("source run finished", extra={"source": "quotes", "status": "success", "pages": 10,
         "error": None, "note": "two words"})
log.warning("fetch failed", extra={"source": "quotes", "url": "http://h/p?a=1", "status": 503})
print("chosen", chosen, file=sys.stderr)
"""

CONSOLE_LINE = re.compile(
    r"^\d\d:\d\d:\d\d INFO  quotes         source run finished  status=success pages=10 "
    r'note="two words"$'
)


def run(fmt: str, tty: bool, env: dict[str, str] | None = None) -> terminal.Result:
    result = terminal.run(
        [sys.executable, "-c", SNIPPET, fmt], stdout_tty=tty, stderr_tty=False, env=env
    )
    assert result.returncode == 0, result.stderr
    return result


def test_auto_is_console_on_a_terminal() -> None:
    result = run("auto", tty=True, env={"NO_COLOR": "1"})
    assert "chosen console" in result.stderr
    lines = result.stdout.splitlines()
    assert CONSOLE_LINE.match(lines[0]), lines[0]
    assert re.match(
        r"^\d\d:\d\d:\d\d WARN  quotes         fetch failed  url=http://h/p\?a=1 status=503$",
        lines[1],
    ), lines[1]
    assert "\x1b[" not in result.stdout  # NO_COLOR honoured


def test_auto_is_json_in_a_pipe_with_the_documented_fields() -> None:
    result = run("auto", tty=False)
    assert "chosen json" in result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert set(first) >= {"time", "level", "logger", "message", "instance", "source"}
    assert first["level"] == "INFO" and first["logger"] == "crawler.pipeline"
    assert first["message"] == "source run finished" and first["instance"] == "pi3"
    assert first["pages"] == 10 and first["status"] == "success"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", first["time"])
    assert second["level"] == "WARNING" and second["status"] == 503


def test_colour_on_a_colour_terminal_only() -> None:
    coloured = run("auto", tty=True, env={"NO_COLOR": "", "TERM": "xterm-256color"}).stdout
    assert "\x1b[32mINFO \x1b[0m" in coloured and "\x1b[33mWARN \x1b[0m" in coloured
    dumb = run("auto", tty=True, env={"NO_COLOR": "", "TERM": "dumb"}).stdout
    assert "\x1b[" not in dumb


@pytest.mark.parametrize(("fmt", "tty"), [("json", True), ("console", False)])
def test_an_explicit_format_wins_over_the_stream(fmt: str, tty: bool) -> None:
    result = run(fmt, tty=tty, env={"NO_COLOR": "1"})
    first = result.stdout.splitlines()[0]
    assert first.startswith("{") == (fmt == "json")
    assert f"chosen {fmt}" in result.stderr


def test_console_quotes_values_that_would_run_together() -> None:
    record = logging.makeLogRecord(
        {
            "msg": "x",
            "levelname": "ERROR",
            "source": None,
            "error": 'say "hi"\nbye',
            "empty": "",
            "n": 3,
        }
    )
    line = ConsoleFormatter().format(record)
    assert line.endswith('  error="say \\"hi\\"\\nbye" empty="" n=3')
    assert "\n" not in line


def test_exceptions_keep_their_traceback_in_console_lines() -> None:
    buf = io.StringIO()
    setup_logging("INFO", fmt="console", stream=buf)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("crawler.t").exception("crashed")
    assert "crashed" in buf.getvalue() and "ValueError: boom" in buf.getvalue()


def test_a_stringio_is_not_a_terminal() -> None:
    assert resolve_format("auto", io.StringIO()) == "json"


def test_log_format_is_a_checked_config_key(tmp_path: Path) -> None:
    from crawler.config.root import load_config
    from crawler.errors import ConfigError

    base = "sources: [{name: s, every: 1h, url: 'http://127.0.0.1:1/', fields: {t: title}}]\n"
    (tmp_path / "ok.yaml").write_text("log_format: console\n" + base)
    assert load_config(tmp_path / "ok.yaml").log_format == "console"
    (tmp_path / "default.yaml").write_text(base)
    assert load_config(tmp_path / "default.yaml").log_format == "auto"
    (tmp_path / "bad.yaml").write_text("log_format: pretty\n" + base)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "bad.yaml")
    assert [str(p) for p in err.value.problems] == [
        f"{tmp_path / 'bad.yaml'}:1: log_format: must be auto, json or console"
    ]
