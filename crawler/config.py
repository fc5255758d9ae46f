"""The configuration: one YAML file, loaded once into frozen typed objects.

Every problem found is reported as `FILE:LINE: key: message` (all of them, not only the first),
so `crawler check` tells the user everything that is wrong in one go. Nothing past `load_config`
sees a raw dict. Secrets (the database password) come from an environment variable or a file,
never only from the YAML.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

import yaml

from crawler.errors import ConfigError, ConfigProblem

T = TypeVar("T")

MAX_URLS_PER_SOURCE = 100_000
SOURCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_RANGE = re.compile(r"\{(-?\d+)\.\.(-?\d+)(?:\.\.(\d+))?\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    None: 1,
}


# --------------------------------------------------------------------------- config objects


@dataclass(frozen=True)
class FieldSpec:
    """One output field of a record: where to find it, and whether to take every match."""

    name: str
    selector: str
    all: bool = False


@dataclass(frozen=True)
class SourceConfig:
    """One configured source: what to fetch, when, and how to turn it into records."""

    name: str
    urls: tuple[str, ...]
    parser: str  # "html" | "json"
    items: str | None
    fields: tuple[FieldSpec, ...]
    key: tuple[str, ...]  # empty: the key is a hash of the whole record
    every: float | None = None
    jitter: float = 0.0
    cron: str | None = None
    robots: bool = True
    enabled: bool = True
    line: int | None = None

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset(urlsplit(u).netloc for u in self.urls)


@dataclass(frozen=True)
class StorageConfig:
    """Where records go: PostgreSQL when a DSN is set, otherwise an embedded SQLite file."""

    dsn: str | None = None
    password: str | None = field(default=None, repr=False)
    sqlite_path: Path | None = None
    batch_size: int = 500
    connect_timeout: float = 5.0
    write_timeout: float = 30.0

    @property
    def backend(self) -> str:
        return "postgres" if self.dsn else "sqlite"


@dataclass(frozen=True)
class SpoolConfig:
    """The local SQLite spool used while PostgreSQL is unreachable."""

    path: Path = Path("var/spool.sqlite")
    max_bytes: int = 256 * 2**20
    drain_batch: int = 500


@dataclass(frozen=True)
class RetryConfig:
    """Exponential backoff with jitter for transient failures."""

    attempts: int = 4
    base: float = 1.0
    max: float = 60.0
    give_up_after: float = 300.0
    retry_after_max: float = 300.0


@dataclass(frozen=True)
class CircuitConfig:
    """Per-host circuit breaker (counts over a sliding window of calls)."""

    failure_ratio: float = 0.5
    window: int = 20
    min_calls: int = 10
    open_for: float = 10.0
    half_open_calls: int = 3


@dataclass(frozen=True)
class FetchConfig:
    """HTTP client limits, politeness and resilience settings."""

    concurrency: int = 16
    per_host_concurrency: int = 4
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    total_timeout: float = 60.0
    max_response_bytes: int = 10 * 2**20
    max_redirects: int = 5
    politeness_delay: float = 1.0
    robots: bool = True
    robots_ttl: float = 3600.0
    # A robots.txt Crawl-delay above this is cut to it: a mistaken or hostile value (hours)
    # must not park a source for good; real sites ask for 1-30 s.
    crawl_delay_max: float = 60.0
    conditional_get: bool = True
    retry: RetryConfig = field(default_factory=RetryConfig)
    circuit: CircuitConfig = field(default_factory=CircuitConfig)


@dataclass(frozen=True)
class MetricsConfig:
    """Where /metrics, /healthz and /readyz listen."""

    host: str = "127.0.0.1"
    port: int = 9410


@dataclass(frozen=True)
class Config:
    """The whole configuration, as loaded from one file."""

    path: Path
    instance: str
    user_agent: str
    log_level: str
    state_dir: Path
    metrics: MetricsConfig
    storage: StorageConfig
    spool: SpoolConfig
    fetch: FetchConfig
    sources: tuple[SourceConfig, ...]
    lease_ttl: float = 60.0

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)


# --------------------------------------------------------------------------- YAML with lines


class _Map(dict[str, Any]):
    """A YAML mapping that remembers the line of itself and of each key."""

    line: int = 0
    lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    result = _Map()
    result.line = node.start_mark.line + 1
    result.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        key = str(key)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Section:
    """Reads one mapping of the file; records problems instead of raising at the first."""

    def __init__(self, ctx: _Context, data: Any, path: str, line: int | None) -> None:
        self.ctx, self.path = ctx, path
        if data is None:
            data = _Map()
            data.line, data.lines = line or 0, {}
        if not isinstance(data, dict):
            ctx.problem(line, path, f"must be a mapping, not {_kind(data)}")
            data = _Map()
            data.line, data.lines = line or 0, {}
        self.data: _Map = data
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def line(self, name: str | None = None) -> int | None:
        if name is not None and name in self.data.lines:
            return self.data.lines[name]
        return self.data.line or None

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, conv: Callable[[Any], T], default: T) -> T:
        self.seen.add(name)
        if name not in self.data or self.data[name] is None:
            return default
        try:
            return conv(self.data[name])
        except (ValueError, TypeError) as exc:
            self.ctx.problem(self.line(name), self.key(name), str(exc))
            return default

    def section(self, name: str) -> _Section:
        self.seen.add(name)
        return _Section(self.ctx, self.data.get(name), self.key(name), self.line(name))

    def done(self) -> None:
        for name in self.data:
            if name not in self.seen:
                hint = difflib.get_close_matches(name, sorted(self.seen), n=1)
                more = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.ctx.problem(self.line(name), self.key(name), f"unknown key{more}")


class _Context:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[ConfigProblem] = []

    def problem(self, line: int | None, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.file, line, key, message))


def _kind(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- value converters


def duration(value: Any) -> float:
    """Seconds from `30`, `1.5`, `500ms`, `30s`, `15m`, `2h` or `1d`."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 15m or 2h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a duration (use e.g. 500ms, 30s, 15m, 2h, 1d)")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def positive_duration(value: Any) -> float:
    seconds = duration(value)
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def size(value: Any) -> int:
    """Bytes from `1048576`, `512KiB`, `10MiB`, `1GB`."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as 10MiB")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a size (use e.g. 512KiB, 10MiB, 1GB)")
        unit = m.group(2).lower() if m.group(2) else None
        n = int(float(m.group(1)) * _SIZE_UNITS[unit])
    if n <= 0:
        raise ValueError("must be greater than zero")
    return n


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number, not {_kind(value)}")
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


def ratio(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError("must be a number greater than 0 and at most 1")
    return float(value)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {_kind(value)}")
    return value


def string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, not {_kind(value)}")
    return value


def listen_address(value: Any) -> tuple[str, int]:
    text = string(value)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9410)")
    return host.strip("[]") or "0.0.0.0", int(port)


def expand_urls(template: str) -> list[str]:
    """Expand `{1..10}` (and `{0..100..10}`) ranges; several ranges give every combination."""
    parts = _RANGE.split(template)
    if len(parts) == 1:
        return [template]
    literals = parts[0::4]
    ranges: list[list[str]] = []
    for start_s, end_s, step_s in zip(parts[1::4], parts[2::4], parts[3::4]):
        start, end, step = int(start_s), int(end_s), int(step_s or 1)
        if step <= 0:
            raise ValueError("a range step must be greater than zero")
        sign = 1 if end >= start else -1
        width = len(start_s) if start_s.startswith("0") and len(start_s) > 1 else 0
        ranges.append([str(i).zfill(width) for i in range(start, end + sign, sign * step)])
    total = 1
    for r in ranges:
        total *= len(r)
    if total > MAX_URLS_PER_SOURCE:
        raise ValueError(f"expands to {total} URLs, more than {MAX_URLS_PER_SOURCE}")
    out = []
    for combo in itertools.product(*ranges):
        pieces = [literals[0]]
        for value, literal in zip(combo, literals[1:]):
            pieces += [value, literal]
        out.append("".join(pieces))
    return out


# --------------------------------------------------------------------------- loading


def _read_secret(sec: _Section, env_key: str, file_key: str) -> str | None:
    env_name = sec.get(env_key, string, "")
    file_name = sec.get(file_key, string, "")
    if env_name and file_name:
        sec.ctx.problem(
            sec.line(file_key), sec.key(file_key), f"use {env_key} or {file_key}, not both"
        )
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            sec.ctx.problem(
                sec.line(env_key), sec.key(env_key), f"environment variable {env_name} is not set"
            )
        return value
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            sec.ctx.problem(
                sec.line(file_key), sec.key(file_key), f"cannot read {file_name}: {exc.strerror}"
            )
    return None


def _check_dsn(sec: _Section, dsn: str) -> None:
    if not dsn.startswith(("postgresql://", "postgres://")) and "=" not in dsn:
        sec.ctx.problem(
            sec.line("dsn"),
            sec.key("dsn"),
            "must be a PostgreSQL URI (postgresql://user@host/db) or key=value string",
        )
    elif urlsplit(dsn).password:
        sec.ctx.problem(
            sec.line("dsn"),
            sec.key("dsn"),
            "must not contain a password: use password_env or password_file",
        )


def _load_fetch(sec: _Section) -> FetchConfig:
    d = FetchConfig()
    r, c = RetryConfig(), CircuitConfig()
    rs = sec.section("retry")
    retry = RetryConfig(
        attempts=rs.get("attempts", positive_int, r.attempts),
        base=rs.get("base", positive_duration, r.base),
        max=rs.get("max", positive_duration, r.max),
        give_up_after=rs.get("give_up_after", positive_duration, r.give_up_after),
        retry_after_max=rs.get("retry_after_max", duration, r.retry_after_max),
    )
    rs.done()
    cs = sec.section("circuit")
    circuit = CircuitConfig(
        failure_ratio=cs.get("failure_ratio", ratio, c.failure_ratio),
        window=cs.get("window", positive_int, c.window),
        min_calls=cs.get("min_calls", positive_int, c.min_calls),
        open_for=cs.get("open_for", positive_duration, c.open_for),
        half_open_calls=cs.get("half_open_calls", positive_int, c.half_open_calls),
    )
    cs.done()
    cfg = FetchConfig(
        concurrency=sec.get("concurrency", positive_int, d.concurrency),
        per_host_concurrency=sec.get("per_host_concurrency", positive_int, d.per_host_concurrency),
        connect_timeout=sec.get("connect_timeout", positive_duration, d.connect_timeout),
        read_timeout=sec.get("read_timeout", positive_duration, d.read_timeout),
        total_timeout=sec.get("total_timeout", positive_duration, d.total_timeout),
        max_response_bytes=sec.get("max_response_bytes", size, d.max_response_bytes),
        max_redirects=sec.get("max_redirects", positive_int, d.max_redirects),
        politeness_delay=sec.get("politeness_delay", duration, d.politeness_delay),
        robots=sec.get("robots", boolean, d.robots),
        robots_ttl=sec.get("robots_ttl", positive_duration, d.robots_ttl),
        crawl_delay_max=sec.get("crawl_delay_max", duration, d.crawl_delay_max),
        conditional_get=sec.get("conditional_get", boolean, d.conditional_get),
        retry=retry,
        circuit=circuit,
    )
    sec.done()
    return cfg


def _load_fields(sec: _Section, parser: str) -> tuple[FieldSpec, ...]:
    from crawler.extract import check_selector  # late: keeps parsel off the config-only path

    out = []
    for name in sec.data:
        sec.seen.add(name)
        raw = sec.data[name]
        all_ = False
        if isinstance(raw, dict):
            fs = _Section(sec.ctx, raw, sec.key(name), sec.line(name))
            raw = fs.get("selector", string, "")
            all_ = fs.get("all", boolean, False)
            fs.done()
            if not raw:
                sec.ctx.problem(sec.line(name), sec.key(name) + ".selector", "is required")
                continue
        elif not isinstance(raw, str) or not raw.strip():
            sec.ctx.problem(
                sec.line(name),
                sec.key(name),
                "must be a selector string or {selector: ..., all: true}",
            )
            continue
        error = check_selector(parser, raw)
        if error:
            sec.ctx.problem(sec.line(name), sec.key(name), error)
            continue
        out.append(FieldSpec(name=str(name), selector=raw, all=all_))
    if not out and not sec.ctx.problems:
        sec.ctx.problem(sec.line(), sec.path, "needs at least one field")
    return tuple(out)


def _load_source(
    ctx: _Context, raw: Any, index: int, line: int | None, fetch: FetchConfig
) -> SourceConfig | None:
    from crawler.extract import check_selector
    from crawler.schedule import check_cron

    sec = _Section(ctx, raw, f"sources[{index}]", line)
    before = len(ctx.problems)
    name = sec.get("name", string, "")
    if not name:
        ctx.problem(sec.line(), sec.key("name"), "every source needs a name")
    elif not SOURCE_NAME.match(name):
        ctx.problem(
            sec.line("name"),
            sec.key("name"),
            "use letters, digits, '_', '.', '-' (at most 64), starting with a letter",
        )
    else:
        sec.path = f"sources.{name}"
    every = sec.get("every", positive_duration, None)
    cron = sec.get("cron", string, None)
    jitter = sec.get("jitter", duration, 0.0)
    if every is None and cron is None and not (sec.has("every") or sec.has("cron")):
        ctx.problem(sec.line(), sec.key("every"), "a source needs `every` or `cron`")
    elif every is not None and cron is not None:
        ctx.problem(sec.line("cron"), sec.key("cron"), "use `every` or `cron`, not both")
    if cron is not None:
        error = check_cron(cron)
        if error:
            ctx.problem(sec.line("cron"), sec.key("cron"), error)
    urls: list[str] = []
    raw_urls = sec.get("urls", lambda v: v, None)
    if raw_urls is None and sec.has("url"):
        raw_urls = [sec.get("url", string, "")]
    sec.seen.add("url")
    if not raw_urls:
        ctx.problem(sec.line(), sec.key("urls"), "a source needs at least one URL")
    elif not isinstance(raw_urls, list):
        ctx.problem(sec.line("urls"), sec.key("urls"), "must be a list of URLs")
    else:
        for u in raw_urls:
            if (
                not isinstance(u, str)
                or urlsplit(u).scheme not in ("http", "https")
                or not urlsplit(u).netloc
            ):
                ctx.problem(sec.line("urls"), sec.key("urls"), f"{u!r} is not an http(s) URL")
                continue
            try:
                urls.extend(expand_urls(u))
            except ValueError as exc:
                ctx.problem(sec.line("urls"), sec.key("urls"), str(exc))
    parser = sec.get("parser", string, "html")
    if parser not in ("html", "json"):
        ctx.problem(sec.line("parser"), sec.key("parser"), "must be `html` or `json`")
        parser = "html"
    items = sec.get("items", string, None)
    if items is not None:
        error = check_selector(parser, items)
        if error:
            ctx.problem(sec.line("items"), sec.key("items"), error)
    fields_sec = sec.section("fields")
    fields = _load_fields(fields_sec, parser)
    declared = set(fields_sec.data)  # a field that failed to parse is still declared
    key_raw: Any = sec.get("key", _as_list, [])
    key: tuple[str, ...] = ()
    if not isinstance(key_raw, list) or not all(isinstance(k, str) for k in key_raw):
        ctx.problem(sec.line("key"), sec.key("key"), "must be a field name or a list of them")
    else:
        for k in key_raw:
            if declared and k not in declared:
                ctx.problem(sec.line("key"), sec.key("key"), f"{k!r} is not one of the fields")
        key = tuple(key_raw)
    robots = sec.get("robots", boolean, True)
    enabled = sec.get("enabled", boolean, True)
    sec.done()
    if len(ctx.problems) > before:
        return None
    return SourceConfig(
        name=name,
        urls=tuple(urls),
        parser=parser,
        items=items,
        fields=fields,
        key=key,
        every=every,
        jitter=jitter,
        cron=cron,
        robots=robots,
        enabled=enabled,
        line=sec.line(),
    )


def _parse_yaml(ctx: _Context, text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        ctx.problem(line, "", f"YAML syntax: {exc.problem or exc.context}")
    except yaml.YAMLError as exc:
        ctx.problem(None, "", f"YAML syntax: {exc}")
    return None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and validate the configuration file; raise ConfigError listing every problem."""
    file = str(path)
    ctx = _Context(file)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        ctx.problem(None, "", f"cannot read: {getattr(exc, 'strerror', None) or exc}")
        raise ConfigError(ctx.problems) from None
    data = _parse_yaml(ctx, text)
    if ctx.problems:
        raise ConfigError(ctx.problems)
    top = _Section(ctx, data, "", 1)
    instance = top.get("instance", string, socket.gethostname())
    user_agent = top.get("user_agent", string, "pi-crawler/0.1")
    log_level = top.get("log_level", string, "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        ctx.problem(top.line("log_level"), "log_level", "must be DEBUG, INFO, WARNING or ERROR")
    base = Path(file).resolve().parent
    state_dir = base / top.get("state_dir", string, "var")

    ms = top.section("metrics")
    host, port = ms.get("listen", listen_address, ("127.0.0.1", 9410))
    ms.done()

    ss = top.section("storage")
    dsn = ss.get("dsn", string, None)
    if dsn:
        _check_dsn(ss, dsn)
    password = _read_secret(ss, "password_env", "password_file")
    sqlite_path = ss.get("sqlite_path", string, None)
    storage = StorageConfig(
        dsn=dsn,
        password=password,
        sqlite_path=(base / sqlite_path) if sqlite_path else state_dir / "crawler.sqlite",
        batch_size=ss.get("batch_size", positive_int, 500),
        connect_timeout=ss.get("connect_timeout", positive_duration, 5.0),
        write_timeout=ss.get("write_timeout", positive_duration, 30.0),
    )
    ss.done()

    sp = top.section("spool")
    spool_path = sp.get("path", string, None)
    spool = SpoolConfig(
        path=(base / spool_path) if spool_path else state_dir / "spool.sqlite",
        max_bytes=sp.get("max_bytes", size, SpoolConfig.max_bytes),
        drain_batch=sp.get("drain_batch", positive_int, SpoolConfig.drain_batch),
    )
    sp.done()

    fetch = _load_fetch(top.section("fetch"))
    lease_ttl = top.get("lease_ttl", positive_duration, 60.0)

    top.seen.add("sources")
    raw_sources = top.data.get("sources")
    sources: list[SourceConfig] = []
    if not raw_sources:
        ctx.problem(top.line("sources"), "sources", "at least one source is required")
    elif not isinstance(raw_sources, list):
        ctx.problem(top.line("sources"), "sources", "must be a list of sources")
    else:
        seen: dict[str, int | None] = {}
        for i, raw in enumerate(raw_sources):
            line = raw.line if isinstance(raw, _Map) else top.line("sources")
            src = _load_source(ctx, raw, i, line, fetch)
            if src is None:
                continue
            if src.name in seen:
                ctx.problem(
                    src.line,
                    f"sources.{src.name}",
                    f"duplicate source name (first at line {seen[src.name]})",
                )
            seen[src.name] = src.line
            sources.append(src)
    top.done()
    if ctx.problems:
        raise ConfigError(ctx.problems)
    return Config(
        path=Path(file),
        instance=instance,
        user_agent=user_agent,
        log_level=log_level,
        state_dir=state_dir,
        metrics=MetricsConfig(host=host, port=port),
        storage=storage,
        spool=spool,
        fetch=fetch,
        sources=tuple(sources),
        lease_ttl=lease_ttl,
    )
