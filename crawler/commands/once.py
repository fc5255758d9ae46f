"""`crawler once -c FILE [SOURCE…]`: run sources once (`command`); at a terminal, live progress
per source and a closing summary table.

One line per source, redrawn a few times a second on stderr: pages done of the pages known at
the start, records extracted, pages failed, and whether the run is still going. The figures are
read from the run's own metrics registry (the counters every run updates anyway), so the
pipeline knows nothing about this display. Log lines written meanwhile (to stdout or stderr,
usually the same terminal) are printed above the progress lines, which are redrawn after them.

Nothing of this is shown when stderr is not a terminal: cron, systemd and pipes get the JSON
log lines, which carry the same facts.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from prometheus_client import CollectorRegistry

from crawler.config.root import Config
from crawler.config.sources import SourceConfig
from crawler.errors import EXIT_CONFIG, EXIT_FAILED
from crawler.observability.logs import is_terminal
from crawler.run.result import RunResult

INTERVAL = 0.25  # seconds between redraws
_CLEAR = "\x1b[{n}F\x1b[J"  # to the start of the line n lines up, then clear to the end
# Counters read per source: metric name → what the progress line calls it.
_COUNTERS = {
    "crawler_pages_total": "pages",
    "crawler_not_modified_total": "pages",
    "crawler_fetch_errors_total": "failed",
    "crawler_records_extracted_total": "records",
    "crawler_source_runs_total": "runs",
}


def counts(registry: CollectorRegistry) -> dict[str, dict[str, float]]:
    """{source: {pages, failed, records, runs, runs_failed}} from one pass over the registry."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for family in registry.collect():
        for sample in family.samples:
            name = _COUNTERS.get(sample.name)
            if name is not None and "source" in sample.labels:
                out[sample.labels["source"]][name] += sample.value
                if name == "runs" and sample.labels.get("outcome") == "failure":
                    out[sample.labels["source"]]["runs_failed"] += sample.value
    return out


class Progress:
    """The progress lines of some sources, drawn on `stream` (a terminal)."""

    def __init__(
        self, stream: TextIO, sources: Sequence[SourceConfig], registry: CollectorRegistry
    ) -> None:
        self.stream, self.sources, self.registry = stream, sources, registry
        self.drawn = 0  # lines on screen now
        self.width = _width(stream)

    def lines(self) -> list[str]:
        now = counts(self.registry)
        label = max((len(s.name) for s in self.sources), default=0)
        out = []
        for s in self.sources:
            c = now.get(s.name, {})
            done = int(c.get("pages", 0) + c.get("failed", 0))
            total = len(s.urls)
            pages = f"{done}/{total}" if done <= total else str(done)
            state = ("failed" if c.get("runs_failed") else "done") if c.get("runs") else "running"
            line = (
                f"{s.name:<{label}}  {pages:>9} pages  {int(c.get('records', 0)):>7} records"
                f"  {int(c.get('failed', 0)):>4} failed  {state}"
            )
            out.append(line[: self.width - 1])
        return out

    def draw(self) -> None:
        text = self._clear_text() + "".join(line + "\n" for line in self.lines())
        self.stream.write(text)
        self.stream.flush()
        self.drawn = len(self.sources)

    def clear(self) -> None:
        if self.drawn:
            self.stream.write(self._clear_text())
            self.stream.flush()
            self.drawn = 0

    def _clear_text(self) -> str:
        return _CLEAR.format(n=self.drawn) if self.drawn else ""

    async def run(self) -> None:
        """Redraw until cancelled; then leave the screen without progress lines."""
        with logs_above(self):
            try:
                while True:
                    self.draw()
                    await asyncio.sleep(INTERVAL)
            finally:
                self.clear()


@contextmanager
def logs_above(progress: Progress) -> Iterator[None]:
    """While active, each log record clears the progress lines, is written, and they are
    redrawn below it (wrapping the root handlers' `emit`, restored on exit)."""
    saved: list[tuple[logging.Handler, Any]] = []
    for handler in logging.getLogger().handlers:
        emit = handler.emit

        def wrapped(record: logging.LogRecord, emit: Any = emit) -> None:
            drawn = progress.drawn
            progress.clear()
            emit(record)
            if drawn:
                progress.draw()

        saved.append((handler, emit))
        handler.emit = wrapped  # type: ignore[method-assign]
    try:
        yield
    finally:
        for handler, emit in saved:
            handler.emit = emit  # type: ignore[method-assign]


def summary(results: Iterable[RunResult]) -> list[str]:
    """The closing table: one line per source run."""
    out = ["source               status    pages  304  failed  records"]
    for r in results:
        out.append(
            f"{r.source:<20} {r.status:<8} {r.pages:>6} {r.not_modified:>4} {r.failed_pages:>7}"
            f" {r.records:>8}" + (f"  {r.error}" if r.error else "")
        )
    return out


def _width(stream: TextIO) -> int:
    import os

    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        columns = 0
    return columns if columns > 0 else 80  # a pty nobody sized says 0


def command(config: Config, names: list[str]) -> int:
    """`crawler once -c FILE [SOURCE…]`: run the sources once; exit 1 when any run failed."""
    from crawler.service import Service

    unknown = [n for n in names if n not in {s.name for s in config.sources}]
    if unknown:
        print(f"crawler: unknown source(s): {', '.join(unknown)}", file=sys.stderr)
        return EXIT_CONFIG
    # Progress and the summary table are for a person at a terminal; a pipe, cron or systemd
    # gets the JSON log lines, which say the same.
    on_terminal = is_terminal(sys.stderr)

    async def go() -> list[RunResult]:
        service = Service(config)
        watcher = None
        if on_terminal:
            chosen = [config.source(n) for n in names] or [s for s in config.sources if s.enabled]
            progress = Progress(sys.stderr, chosen, service.metrics.registry)
            watcher = asyncio.create_task(progress.run())
        try:
            return await service.once(names)
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)

    results = asyncio.run(go())
    if on_terminal:
        for line in summary(results):
            print(line, file=sys.stderr)
    return 0 if all(r.ok for r in results) else EXIT_FAILED
