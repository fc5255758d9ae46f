"""The command line: `crawler run|once|check|spool|preview|quarantine -c FILE`.

Configuration problems are printed one per line as `FILE:LINE: key: message` with exit status
2, never as a traceback. `once` exits 1 when any source run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from crawler import __version__
from crawler.config.root import Config, load_config
from crawler.errors import ConfigError, CrawlerError, StoreUnavailable
from crawler.observability.logs import is_terminal, setup_logging

if TYPE_CHECKING:
    from crawler.run.result import RunResult

EXIT_FAILED = 1
EXIT_CONFIG = 2

log = logging.getLogger("crawler.cli")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crawler", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"crawler {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument("-c", "--config", required=True, help="the YAML configuration file")
        return sp

    add("run", "crawl on schedule and serve /metrics until SIGTERM or SIGINT")
    once = add("once", "run sources once, print a summary, exit non-zero if any failed")
    once.add_argument("sources", nargs="*", help="source names (default: every enabled source)")
    add("check", "validate the configuration and exit (2 on errors)")
    spool = add("spool", "show the spool's depth and oldest age; --drain moves it to PostgreSQL")
    spool.add_argument("--drain", action="store_true", help="drain the spool now")
    quarantine = add(
        "quarantine", "records the store refused for their data: count, --list, --retry, --drop"
    )
    action = quarantine.add_mutually_exclusive_group()
    for name, help_text in (
        ("list", "print each quarantined record as one JSON object"),
        ("retry", "store them again (after fixing the database); the refused ones stay"),
        ("drop", "delete every quarantined record"),
    ):
        action.add_argument(
            f"--{name}", dest="action", action="store_const", const=name, help=help_text
        )
    preview = add("preview", "fetch a source's first page, show its records; store nothing")
    preview.add_argument("source", help="the source's name")
    preview.add_argument("--url", help="this page instead of the source's first URL")
    preview.add_argument(
        "--limit", type=_positive, default=20, metavar="N", help="records shown (default 20)"
    )
    preview.add_argument("--json", action="store_true", help="one JSON object per record")
    export = add("export", "write stored records as JSON lines or CSV (constant memory)")
    export.add_argument("sources", nargs="*", help="source names (default: every source)")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument(
        "--since", metavar="DURATION", help="only records seen within this time (e.g. 1d)"
    )
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    export.add_argument(
        "--unprocessed", action="store_true", help="only records not yet marked processed"
    )
    export.add_argument(
        "--mark-processed",
        action="store_true",
        help="mark exactly the exported records processed, once the output is complete",
    )
    return p


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above zero")
    return int(text)


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    if args.command == "check":
        print(
            f"{args.config}: ok ({len(config.sources)} sources, storage {config.storage.backend})"
        )
        return 0
    # Commands whose stdout is their output log to stderr, so a pipe gets only the data.
    data_out = args.command in ("preview", "export", "quarantine")
    setup_logging(
        config.log_level,
        config.instance,
        stream=sys.stderr if data_out else None,
        fmt=config.log_format,
    )
    try:
        if args.command == "run":
            return _run(config)
        if args.command == "once":
            return _once(config, args.sources)
        if args.command == "preview":
            from crawler.commands.preview import command as preview

            return preview(config, args.source, args.url, args.limit, args.json)
        if args.command == "export":
            from crawler.commands.export import command as export

            return export(
                config,
                args.sources,
                args.format,
                args.since,
                args.output,
                args.unprocessed,
                args.mark_processed,
            )
        if args.command == "quarantine":
            from crawler.commands.quarantine import command as quarantine

            return asyncio.run(quarantine(config, args.action or "count"))
        return _spool(config, args.drain)
    except KeyboardInterrupt:
        return 130
    except CrawlerError as exc:
        log.error("crawler failed", extra={"error": str(exc)})
        print(f"crawler: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _run(config: Config) -> int:
    from crawler.service import Service

    asyncio.run(Service(config).serve())
    return 0


def _once(config: Config, names: list[str]) -> int:
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
            from crawler.commands.once import Progress

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
        from crawler.commands.once import summary

        for line in summary(results):
            print(line, file=sys.stderr)
    return 0 if all(r.ok for r in results) else EXIT_FAILED


def _spool(config: Config, drain: bool) -> int:
    from crawler.observability.metrics import Metrics
    from crawler.storage.sink import Sink

    if not config.storage.dsn:
        print(
            "crawler: no spool: the embedded SQLite store is in use (no storage.dsn)",
            file=sys.stderr,
        )
        return EXIT_FAILED

    async def go() -> int:
        sink = Sink(config, Metrics())
        await sink.open(drainer=False)
        try:
            assert sink.spool is not None
            before = sink.spool.stats()
            print(json.dumps({"spool": before, "database_up": sink.db_up}))
            if drain:
                try:
                    moved = await sink.drain()
                except StoreUnavailable as exc:
                    print(f"crawler: cannot drain: {exc}", file=sys.stderr)
                    return EXIT_FAILED
                print(json.dumps({"drained": moved, "spool": sink.spool.stats()}))
            return 0
        finally:
            await sink.close()

    return asyncio.run(go())
