"""The configuration as a whole: one YAML file, loaded once into frozen, keyword-only typed
objects (`Config`, `load_config`).

Each key is declared once, here and in the section modules beside this one, with its type,
default, converter and doc line (`crawler/config/loader.py` reads any such declaration;
`crawler/config/convert.py` holds the converters; `python -m crawler.config.doc` writes
docs/config.md's tables from these declarations). Every problem found is reported as
`FILE:LINE: key: message` — all of them, not only the first — so `crawler check` tells the user
everything that is wrong in one go. Nothing past `load_config` sees a raw dict. Secrets (the
database password) come from an environment variable or a file, never from the YAML.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from crawler.config import convert as cv
from crawler.config.fetch import FetchConfig
from crawler.config.loader import (
    Problems,
    derived,
    entries,
    load,
    read_file,
    section,
    setting,
)
from crawler.config.metrics import MetricsConfig
from crawler.config.render import BrowserConfig
from crawler.config.sources import SourceConfig
from crawler.config.storage import SpoolConfig, StorageConfig
from crawler.errors import ConfigError

# The `log_format` choices (crawler/observability/logs.py writes them).
LOG_FORMATS = ("auto", "json", "console")


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole configuration, as loaded from one file."""

    path: Path = derived()
    instance: str = setting(
        None,
        cv.string,
        "this crawler's name: the `instance` field of every log line, `crawler_instance_info`, "
        "`crawler_jobs.instance`, the lease holder",
        factory=socket.gethostname,
        shown="the host name",
    )
    user_agent: str = setting(
        "pi-crawler/0.1",
        cv.string,
        "sent with every request and matched against robots.txt; put a contact URL in it",
    )
    log_level: str = setting(
        "INFO",
        cv.choice("DEBUG", "INFO", "WARNING", "ERROR", upper=True),
        "`DEBUG` adds a line per page and per committed batch (with keys)",
    )
    log_format: str = setting(
        "auto",
        cv.choice(*LOG_FORMATS),
        "`console` (short aligned lines, coloured on a colour terminal unless `NO_COLOR`), "
        "`json` (one object per line: what journald, Docker and Promtail want) or `auto`: "
        "console when stdout is a terminal, JSON otherwise",
    )
    state_dir: Path = setting(
        Path("var"),
        cv.path,
        "the spool, the HTTP state (ETags) and the embedded store live here; on the Pi "
        "`/var/lib/crawler`",
    )
    lease_ttl: float = setting(
        60.0,
        cv.positive_duration,
        "several crawlers on one PostgreSQL: how long a source's lease lasts without renewal "
        "(a dead crawler's sources move after at most this); renewed every third of it on a "
        "connection of its own, each renewal within that third, else no new runs of the "
        "sources once the rest has passed",
    )
    metrics: MetricsConfig = section(MetricsConfig, "the crawler's own HTTP endpoints")
    storage: StorageConfig = section(StorageConfig, "where records go")
    spool: SpoolConfig = section(SpoolConfig, "the local spool (only with a `dsn`)")
    fetch: FetchConfig = section(FetchConfig, "HTTP client limits, politeness, resilience")
    browser: BrowserConfig | None = section(
        BrowserConfig, "where pages of `render` sources are rendered", optional=True
    )
    sources: tuple[SourceConfig, ...] = entries(
        SourceConfig, "the sources to crawl", label="name", required=True
    )

    def check(self) -> Iterable[tuple[str, str]]:
        seen: dict[str, int | None] = {}
        for s in self.sources:
            if s.name in seen:
                yield f"sources.{s.name}", f"duplicate source name (first at line {seen[s.name]})"
            seen.setdefault(s.name, s.line)
            if s.render is not None and self.browser is None:
                yield (
                    f"sources.{s.name}.render",
                    "needs a `browser:` section (an `endpoint` or an `executable`)",
                )

    @property
    def renders(self) -> bool:
        """Whether a browser is needed: some source renders its pages."""
        return self.browser is not None and any(s.render is not None for s in self.sources)

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and validate the configuration file; raise ConfigError listing every problem."""
    file = str(path)
    problems = Problems(file)
    base = Path(file).resolve().parent
    token = cv.BASE_DIR.set(base)
    try:
        data = read_file(problems, file)
        cfg = None if len(problems) else load(Config, problems, data, "", 1)
    finally:
        cv.BASE_DIR.reset(token)
    if cfg is None or len(problems):
        raise ConfigError(problems.found)
    # Given paths are already absolute (relative to the file); defaults are under state_dir.
    state_dir = base / cfg.state_dir
    return dataclasses.replace(
        cfg,
        path=Path(file),
        state_dir=state_dir,
        storage=dataclasses.replace(cfg.storage, sqlite_path=state_dir / cfg.storage.sqlite_path),
        spool=dataclasses.replace(cfg.spool, path=state_dir / cfg.spool.path),
    )
