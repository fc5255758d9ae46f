"""The configuration: one YAML file, loaded once into frozen, keyword-only typed objects.

Each key is declared once, below, with its type, default, converter and doc line
(`crawler/configfile.py` reads any such declaration; `crawler/convert.py` holds the converters;
`python -m crawler.configdoc` writes docs/config.md's tables from these declarations). Every
problem found is reported as `FILE:LINE: key: message` — all of them, not only the first — so
`crawler check` tells the user everything that is wrong in one go. Nothing past `load_config` sees
a raw dict. Secrets (the database password) come from an environment variable or a file, never
from the YAML.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from crawler import convert as cv
from crawler.configfile import (
    REQUIRED,
    Problems,
    derived,
    entries,
    load,
    read_file,
    secret,
    section,
    setting,
)
from crawler.discover_config import (
    FollowConfig,
    PaginateConfig,
    SitemapConfig,
    source_problems,
)
from crawler.errors import ConfigError
from crawler.feed import ENTRY_KEYS
from crawler.fields import FieldSpec, field_problems
from crawler.logs import FORMATS as LOG_FORMATS
from crawler.request import RequestConfig, proxy_url
from crawler.selectors import check_selector
from crawler.webauth import server_ssl_context, users_file

__all__ = ["Config", "FieldSpec", "SourceConfig", "load_config"]

# Re-exported: tests and tools convert values the way the loader does.
duration, size, expand_urls = cv.duration, cv.size, cv.expand_urls


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True, kw_only=True)
class SourceConfig:
    """One configured source: what to fetch, when, and how to turn it into records."""

    name: str = setting(
        REQUIRED,
        cv.source_name,
        "letters, digits, `_ . -`; a metric label and the `source` column",
        missing="every source needs a name",
    )
    every: float | None = setting(
        None, cv.positive_duration, "run interval (`15m`); `every` or `cron` is required"
    )
    cron: str | None = setting(
        None, cv.cron, "a 5-field crontab in the machine's time zone, instead of `every`"
    )
    jitter: float = setting(0.0, cv.duration, "random delay added to each `every` run")
    urls: tuple[str, ...] = setting(
        (),
        cv.url_templates,
        "`http(s)` URLs; `{1..10}`, `{01..10}`, `{0..100..10}` expand (several ranges: every "
        "combination)",
        shown="required (or `sitemap`)",
    )
    url: str | None = setting(None, cv.http_url, "one URL: the same as `urls: [URL]`")
    parser: str = setting(
        "html",
        cv.choice("html", "json", "feed"),
        "`html` (CSS, or XPath with an `xpath:` prefix), `json` (JMESPath) or `feed` (RSS 2.0, "
        "RSS 1.0, Atom: each entry a record)",
    )
    items: str | None = setting(
        None, cv.string, "selector of the repeated element; none → the whole page is one record"
    )
    html_engine: str = setting(
        "auto",
        cv.choice("auto", "lxml"),
        "`auto`: html pages are parsed and matched by Lexbor (selectolax, ~5x faster) when every "
        "selector of the source is one it matches exactly as lxml does, else by lxml; `lxml`: "
        "always libxml2 (see *HTML engines* below)",
    )
    fields: tuple[FieldSpec, ...] = entries(
        FieldSpec,
        "`name: selector`, or `name: {selector: …, type: …, …}`: the field pipeline below; "
        "with `follow`, of the detail pages; with `parser: feed`, optional (entry keys by name)",
        by_name="name",
        shorthand="selector",
    )
    key: tuple[str, ...] = setting(
        (),
        cv.string_list,
        "field name(s) whose values identify a record (one short scalar is kept readable)",
        shown="hash of the record",
    )
    robots: bool = setting(True, cv.boolean, "`false` skips robots.txt for this source")
    allow_private: bool = setting(
        False,
        cv.boolean,
        "`true` lets this source reach loopback, private, link-local and other non-public "
        "addresses (a LAN host by name); otherwise only the IP literals and `localhost` "
        "written in its own URLs may be non-public, and any other such destination (a "
        "redirect, a name resolving there) fails as `blocked_address` (docs/security.md)",
    )
    allow_https_to_http: bool = setting(
        False,
        cv.boolean,
        "`true` follows redirects from `https` to plain `http`; otherwise such a redirect "
        "fails as `redirect`",
    )
    request: RequestConfig | None = section(
        RequestConfig,
        "how the URLs are requested: method, body, headers, auth, proxy (below)",
        optional=True,
    )
    user_agent: str | None = setting(
        None,
        cv.string,
        "this source's `User-Agent` (and the name matched in robots.txt)",
        shown="the top-level `user_agent`",
    )
    timezone: str = setting(
        "UTC",
        cv.timezone,
        "IANA zone (`Europe/Paris`) of naive times in the source's pages, for `type: datetime`",
    )
    history: bool = setting(
        False,
        cv.boolean,
        "keep every changed version of a record in `scraped_data_history` (source, key, data, "
        "seen_at), written in the upsert's transaction; unchanged re-crawls add nothing",
    )
    enabled: bool = setting(
        True, cv.boolean, "`false` keeps the source configured but never scheduled"
    )
    paginate: PaginateConfig | None = section(
        PaginateConfig,
        "how a listing page leads to the next: exactly one of `next`, `cursor`, `link_header`, "
        "`page_param` (below)",
        optional=True,
    )
    follow: FollowConfig | None = section(
        FollowConfig,
        "links on the listing pages fetched as detail pages, which give the records (below)",
        optional=True,
    )
    sitemap: SitemapConfig | None = section(
        SitemapConfig, "the source's URLs from a sitemap instead of `urls` (below)", optional=True
    )
    line: int | None = derived()

    def __post_init__(self) -> None:
        if self.url is not None and not self.urls:  # `url:` is shorthand for a list of one
            object.__setattr__(self, "urls", (self.url,))

    def check(self) -> Iterable[tuple[str, str]]:
        if self.every is None and self.cron is None:
            yield "every", "a source needs `every` or `cron`"
        elif self.every is not None and self.cron is not None:
            yield "cron", "use `every` or `cron`, not both"
        if not self.urls and self.sitemap is None:
            yield "urls", "a source needs at least one URL (or a `sitemap`)"
        elif self.urls and self.sitemap is not None:
            yield "urls", "a sitemap source takes its URLs from the sitemap: remove `urls`"
        if not self.fields and self.parser != "feed":
            yield "fields", "needs at least one entry"
        yield from source_problems(self.parser, self.paginate, self.follow, self.sitemap)
        # With `follow`, items and fields are read on the detail pages, with their parser.
        parser = self.follow.parser if self.follow is not None else self.parser
        if self.items is not None and (error := check_selector(parser, self.items)):
            yield "items", error
        for f in self.fields:
            for key, error in field_problems(f, parser):
                # `name: SELECTOR` is the common form: its problem is the field's own.
                yield (f"fields.{f.name}" if key == "selector" else f"fields.{f.name}.{key}"), error
        names = {f.name for f in self.fields}
        if not names and self.parser == "feed" and self.follow is None:
            names = set(ENTRY_KEYS)  # a feed's entries as they are
        for k in self.key:
            if k not in names:
                yield "key", f"{k!r} is not one of the fields"

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset(urlsplit(u).netloc for u in self.urls)


# --------------------------------------------------------------------------- storage


@dataclass(frozen=True, kw_only=True)
class StorageConfig:
    """Where records go: PostgreSQL when a DSN is set, otherwise an embedded SQLite file."""

    dsn: str | None = setting(
        None,
        cv.dsn,
        "a PostgreSQL URI or key=value string, **without** a password; none → the embedded "
        "SQLite store",
    )
    password: str | None = secret(
        "the database password: `password_env` names an environment variable holding it, "
        "`password_file` a file (e.g. `/etc/crawler/db_password`, `/run/secrets/…`)"
    )
    sslmode: str | None = setting(
        None,
        cv.choice("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
        "TLS to PostgreSQL (libpq's `sslmode`); `verify-full` with `sslrootcert` checks the "
        "server is the NAS (docs/security.md); a `sslmode` in the DSN is used when this is unset",
        shown="libpq's `prefer`",
    )
    sslrootcert: Path | None = setting(
        None,
        cv.path,
        "the CA (or the server's self-signed certificate) `verify-ca`/`verify-full` trust, e.g. "
        "`/etc/crawler/postgres-ca.crt`",
        shown="none",
    )
    sqlite_path: Path = setting(
        Path("crawler.sqlite"),
        cv.path,
        "the embedded store (the default is under `state_dir`)",
        shown="`<state_dir>/crawler.sqlite`",
    )
    batch_size: int = setting(
        500,
        cv.positive_int,
        "records per transaction: larger means fewer commits (and SD writes), more RAM per run",
    )
    connect_timeout: float = setting(5.0, cv.positive_duration, "connecting to PostgreSQL")
    write_timeout: float = setting(
        30.0,
        cv.positive_duration,
        "a batch not committed in this time is spooled and the connection dropped (a NAS gone "
        "from the Wi-Fi leaves sockets TCP would retry for ~15 minutes)",
    )

    jobs_retention: float = setting(
        90 * 86400,
        cv.duration,
        "`crawler_jobs` rows older than this are deleted (hourly, in small batches, off the "
        "hot path); `0` keeps them forever. One row per source run: 200 sources every 5 "
        "minutes is ~57,000 rows a day",
    )
    history_retention: float = setting(
        365 * 86400,
        cv.duration,
        "versions in `scraped_data_history` (`history: true`) older than this are deleted the "
        "same way; `0` keeps every version forever",
    )

    @property
    def backend(self) -> str:
        return "postgres" if self.dsn else "sqlite"


@dataclass(frozen=True, kw_only=True)
class SpoolConfig:
    """The local SQLite spool used while PostgreSQL is unreachable."""

    path: Path = setting(
        Path("spool.sqlite"),
        cv.path,
        "the spool file (the default is under `state_dir`)",
        shown="`<state_dir>/spool.sqlite`",
    )
    max_bytes: int = setting(
        256 * 2**20,
        cv.size,
        "the cap (pages in use, not file size); at the cap new records are refused, logged and "
        "counted, `/readyz` is 503",
    )
    drain_batch: int = setting(500, cv.positive_int, "records per drain transaction")


# --------------------------------------------------------------------------- fetching


@dataclass(frozen=True, kw_only=True)
class RetryConfig:
    """Exponential backoff with jitter for transient failures."""

    attempts: int = setting(
        4, cv.positive_int, "attempts per URL for connection errors, timeouts, 5xx and 429"
    )
    base: float = setting(1.0, cv.positive_duration, "first backoff (exponential, with jitter)")
    max: float = setting(60.0, cv.positive_duration, "longest backoff")
    give_up_after: float = setting(
        300.0, cv.positive_duration, "no wait is started that would end past this bound"
    )
    retry_after_max: float = setting(300.0, cv.duration, "`Retry-After` is honoured up to this")


@dataclass(frozen=True, kw_only=True)
class CircuitConfig:
    """Per-host circuit breaker (counts over a sliding window of calls)."""

    failure_ratio: float = setting(
        0.5, cv.ratio, "the per-host breaker opens at this failure ratio…"
    )
    window: int = setting(20, cv.positive_int, "…over the last `window` calls…")
    min_calls: int = setting(10, cv.positive_int, "…once there were `min_calls`")
    open_for: float = setting(10.0, cv.positive_duration, "fail fast this long, then half-open")
    half_open_calls: int = setting(3, cv.positive_int, "probes while half-open")


@dataclass(frozen=True, kw_only=True)
class FetchConfig:
    """HTTP client limits, politeness and resilience settings."""

    concurrency: int = setting(
        16, cv.positive_int, "requests in flight at once, all sources together"
    )
    per_host_concurrency: int = setting(4, cv.positive_int, "requests in flight to one host")
    connect_timeout: float = setting(10.0, cv.positive_duration, "per request: connecting")
    read_timeout: float = setting(30.0, cv.positive_duration, "per request: between two reads")
    total_timeout: float = setting(
        60.0, cv.positive_duration, "per request, whole (a body dripping one byte at a time)"
    )
    max_response_bytes: int = setting(10 * 2**20, cv.size, "cap on the body *after* decompression")
    max_redirects: int = setting(5, cv.positive_int, "redirects followed per request")
    politeness_delay: float = setting(
        1.0,
        cv.duration,
        "minimum gap between two requests to one host (all sources sharing the host)",
    )
    robots: bool = setting(
        True,
        cv.boolean,
        "honour robots.txt (and its `Crawl-delay`); a source can opt out with `robots: false`",
    )
    robots_ttl: float = setting(
        3600.0,
        cv.positive_duration,
        "how long a robots.txt is cached (one failing with 5xx/429/connection errors disallows "
        "the host for 10 minutes, or the last good copy is used; a 4xx allows all)",
    )
    # A robots.txt Crawl-delay above this is cut to it: a mistaken or hostile value (hours)
    # must not park a source for good; real sites ask for 1-30 s.
    crawl_delay_max: float = setting(
        60.0,
        cv.duration,
        "a site's `Crawl-delay` above this is cut to it (a hostile value cannot stall a "
        "source); `0` ignores `Crawl-delay`",
    )
    conditional_get: bool = setting(
        True,
        cv.boolean,
        "send `If-None-Match`/`If-Modified-Since`; a 304 or an unchanged body skips "
        "extraction (ETag, Last-Modified and a 16-byte body hash per URL in "
        "`<state_dir>/http_state.sqlite`, recorded once the page's records are committed)",
    )
    allow_private_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = setting(
        (),
        cv.networks,
        "networks every source may reach although they are not public (`[192.168.1.0/24]`); "
        "for one source, `allow_private: true` there",
        shown="none",
    )
    proxy: str | None = setting(
        None,
        proxy_url,
        "an HTTP(S) proxy for every request (`http://user:pass@proxy:3128`; the password is "
        "redacted from logs); a source's `request.proxy` wins; without either the standard "
        "`HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` variables apply",
    )
    retry: RetryConfig = section(RetryConfig, "retries of transient failures")
    circuit: CircuitConfig = section(CircuitConfig, "the per-host circuit breaker")


# --------------------------------------------------------------------------- the whole file


@dataclass(frozen=True, kw_only=True)
class MetricsTLSConfig:
    """TLS for the endpoints, with exporter-toolkit's `tls_server_config` key names."""

    cert_file: Path = setting(REQUIRED, cv.path, "PEM certificate (chain) the endpoints present")
    key_file: Path = setting(REQUIRED, cv.path, "its PEM private key (readable by the crawler)")

    def check(self) -> Iterable[tuple[str, str]]:
        try:
            server_ssl_context(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            yield "cert_file", f"cannot load the certificate and key: {exc}"


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    """Where /metrics, /healthz and /readyz listen, and who may read them."""

    listen: tuple[str, int] = setting(
        ("127.0.0.1", 9410),
        cv.listen_address,
        "where `/metrics`, `/healthz`, `/readyz` listen; `0.0.0.0:9410` for a Prometheus on "
        "another host",
        shown="`127.0.0.1:9410`",
    )
    basic_auth: tuple[tuple[str, str], ...] = setting(
        (),
        users_file,
        "a file of `basic_auth_users: {user: bcrypt-hash}` (exporter-toolkit's web config, "
        "the one node_exporter's `--web.config.file` reads): `/metrics` and `/readyz` then ask "
        "for a password (`/healthz` stays open); `scripts/hash-password` makes a hash",
        shown="none: no password",
    )
    tls: MetricsTLSConfig | None = section(
        MetricsTLSConfig, "serve the endpoints over HTTPS (`cert_file`, `key_file`)", optional=True
    )

    @property
    def host(self) -> str:
        return self.listen[0]

    @property
    def port(self) -> int:
        return self.listen[1]


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
        "(a dead crawler's sources move after at most this)",
    )
    metrics: MetricsConfig = section(MetricsConfig, "the crawler's own HTTP endpoints")
    storage: StorageConfig = section(StorageConfig, "where records go")
    spool: SpoolConfig = section(SpoolConfig, "the local spool (only with a `dsn`)")
    fetch: FetchConfig = section(FetchConfig, "HTTP client limits, politeness, resilience")
    sources: tuple[SourceConfig, ...] = entries(
        SourceConfig, "the sources to crawl", label="name", required=True
    )

    def check(self) -> Iterable[tuple[str, str]]:
        seen: dict[str, int | None] = {}
        for s in self.sources:
            if s.name in seen:
                yield f"sources.{s.name}", f"duplicate source name (first at line {seen[s.name]})"
            seen.setdefault(s.name, s.line)

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
