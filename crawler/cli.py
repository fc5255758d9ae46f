"""The command line: `crawler run|once|check|reload|status|spool|preview|export|quarantine -c FILE`.

Configuration problems are printed one per line as `FILE:LINE: key: message` with exit status
2, never as a traceback. `once` exits 1 when any source run failed; `status` 1 when a source's
last run failed, and it and `reload` exit 3 when no crawler is running.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from crawler import __version__
from crawler.config.root import Config, load_config
from crawler.errors import EXIT_CONFIG, EXIT_FAILED, ConfigError, CrawlerError
from crawler.observability.logs import setup_logging

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
    add(
        "reload",
        "make the running crawler read its configuration again (SIGHUP) and report the outcome",
    )
    status = add("status", "every source's last and next run, from the running crawler or store")
    status.add_argument("--json", action="store_true", help="one JSON document")
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
    data_out = args.command in ("preview", "export", "quarantine", "status", "reload")
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
            from crawler.commands.once import command as once

            return once(config, args.sources)
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
        if args.command == "status":
            from crawler.commands.status import command as status

            return status(config, args.json)
        if args.command == "reload":
            from crawler.commands.reload import command as reload

            return reload(config)
        if args.command == "quarantine":
            from crawler.commands.quarantine import command as quarantine

            return asyncio.run(quarantine(config, args.action or "count"))
        from crawler.commands.spool import command as spool

        return spool(config, args.drain)
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
