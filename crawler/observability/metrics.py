"""Every metric the crawler exports, defined in one place on an injected registry.

Names follow Prometheus conventions (`crawler_` prefix, `_total` counters, base units).
Labels are bounded by the configuration: source names, hosts named in configured URLs,
`ErrorKind` values and status classes. A URL is never a label. docs/metrics.md is the reference.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from crawler import __version__
from crawler.config.discovery import SKIP_REASONS
from crawler.observability.pullgauges import PullGauges

# Pages on a home connection take 100 ms to several seconds; a Pi adds parse time on top. The
# overview dashboard draws this one's p50 and p95 per source: 8 buckets are enough for that
# (below 100 ms or above 30 s the exact figure does not change what one does).
REQUEST_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# No dashboard or rule reads these two histograms' buckets (only _sum/_count, for averages): a
# few coarse ones keep "how many runs took over 10 minutes" answerable at a fraction of the
# series (each series is formatted on every scrape, per source for runs).
RUN_BUCKETS = (60.0, 600.0)
STORE_BUCKETS = (0.05, 0.25, 1.0, 5.0)
# A render (the page and every request its scripts make, fetched by the crawler) takes seconds to
# tens of seconds, 30 s at most by default: 4 buckets give the overview's p50/p95 per source.
RENDER_BUCKETS = (1.0, 3.0, 10.0, 30.0)
# The bounded values of the login and render counters' labels, all created at 0 per source.
LOGIN_RESULTS = ("ok", "failed")
RENDER_OUTCOMES = ("fetched", "blocked", "refused")


def status_class(status: int | None) -> str:
    return f"{status // 100}xx" if status and 100 <= status < 600 else "none"


class Metrics:
    """The crawler's metrics, registered on `registry` (a fresh one in each test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # No `_created` series: they doubled every counter and histogram, and nothing reads them
        # (Prometheus handles resets without them). Process-wide in prometheus_client.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        r = self.registry = registry if registry is not None else CollectorRegistry()
        # process_start_time_seconds (restart alerts), RSS, CPU, GC: the standard set.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        build = Gauge("crawler_build_info", "Build information.", ["version", "python"], registry=r)
        build.labels(__version__, platform.python_version()).set(1)
        self.instance_info = Gauge(
            "crawler_instance_info", "The configured instance name.", ["instance"], registry=r
        )
        self.up = Gauge("crawler_up", "1 while the crawler service runs.", registry=r)
        self.ready = Gauge("crawler_ready", "1 when /readyz answers 200.", registry=r)

        self.requests = Counter(
            "crawler_requests",
            "HTTP requests finished (every attempt).",
            ["source", "host", "status_class"],
            registry=r,
        )
        self.request_duration = Histogram(
            "crawler_request_duration_seconds",
            "Time from sending a request to its last byte.",
            ["source"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("crawler_requests_in_flight", "Requests in flight.", registry=r)

        def per_source(name: str, help_text: str) -> Counter:
            return Counter(name, help_text, ["source"], registry=r)

        self.response_bytes = per_source(
            "crawler_response_bytes", "Body bytes received, after decompression."
        )
        self.fetch_errors = Counter(
            "crawler_fetch_errors",
            "Fetches that failed for good (after retries).",
            ["source", "error_kind"],
            registry=r,
        )
        self.failed_pages = per_source(
            "crawler_source_failed_pages", "Pages failed for good, any kind."
        )
        self.fetch_retries = Counter(
            "crawler_fetch_retries",
            "Failed attempts that were retried.",
            ["source", "error_kind"],
            registry=r,
        )
        self.not_modified = per_source(
            "crawler_not_modified", "Fetches answered 304 or with an unchanged body."
        )
        self.pages = per_source("crawler_pages", "Pages fetched and extracted.")
        self.records_extracted = per_source(
            "crawler_records_extracted", "Records extracted from pages."
        )
        self.records_stored = Counter(
            "crawler_records_stored",
            "Records committed to the store.",
            ["source", "backend"],
            registry=r,
        )
        self.records_spooled = Counter(
            "crawler_records_spooled",
            "Records committed to the local spool.",
            ["source"],
            registry=r,
        )
        self.records_quarantined = Counter(
            "crawler_records_quarantined",
            "Records the store or spool refused for their data, set aside in the quarantine.",
            ["source"],
            registry=r,
        )
        self.records_refused = Counter(
            "crawler_records_refused",
            "Records refused because the spool was full.",
            ["source"],
            registry=r,
        )
        self.records_dropped = Counter(
            "crawler_records_dropped",
            "Records dropped before the store, by reason (missing_required: a required field"
            " was missing).",
            ["source", "reason"],
            registry=r,
        )
        self.fields_missing = Counter(
            "crawler_fields_missing",
            "Fields of stored records that had no value (nothing matched, or it did not"
            " convert), counted before `default`.",
            ["source", "field"],
            registry=r,
        )
        self.fields_invalid = Counter(
            "crawler_fields_invalid",
            "Field values that did not convert to the field's type.",
            ["source", "field"],
            registry=r,
        )
        self.source_runs = Counter(
            "crawler_source_runs", "Source runs finished.", ["source", "outcome"], registry=r
        )
        self.source_run_duration = Histogram(
            "crawler_source_run_duration_seconds",
            "Duration of a source run.",
            ["source"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.last_run = Gauge(
            "crawler_source_last_run_timestamp_seconds",
            "End of the last run of the source (Unix time).",
            ["source"],
            registry=r,
        )
        self.last_success = Gauge(
            "crawler_source_last_success_timestamp_seconds",
            "End of the last successful run (Unix time); 0 before one.",
            ["source"],
            registry=r,
        )
        self.interval = Gauge(
            "crawler_source_interval_seconds",
            "Expected time between two runs of the source.",
            ["source"],
            registry=r,
        )
        self.next_run = Gauge(
            "crawler_source_next_run_timestamp_seconds",
            "When the scheduler next runs the source (Unix time).",
            ["source"],
            registry=r,
        )
        self.leased = Gauge(
            "crawler_source_leased",
            "1 if this instance holds the source's lease.",
            ["source"],
            registry=r,
        )
        self.store_duration = Histogram(
            "crawler_store_write_duration_seconds",
            "Time to commit one batch.",
            ["backend"],
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "crawler_store_errors", "Batches that failed to commit.", ["backend"], registry=r
        )
        # crawler_database_up and the spool gauges: see watch_spool(), called by the sink only
        # when PostgreSQL is configured (with the embedded store there is no database to be down).
        self.queue_records = Gauge(
            "crawler_queue_records", "Records waiting in memory for the store.", registry=r
        )
        self.spool_max_bytes = Gauge("crawler_spool_max_bytes", "The spool's size cap.", registry=r)
        self.spool_drained = Counter(
            "crawler_spool_drained_records",
            "Records moved from the spool into PostgreSQL.",
            registry=r,
        )
        self.circuit_state = Gauge(
            "crawler_circuit_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
            ["host"],
            registry=r,
        )
        self.circuit_transitions = Counter(
            "crawler_circuit_transitions",
            "Circuit breaker transitions into `state`.",
            ["host", "state"],
            registry=r,
        )
        self.retention_deleted = Counter(
            "crawler_retention_deleted_rows",
            "Rows deleted by retention (storage.jobs_retention, storage.history_retention).",
            ["table"],
            registry=r,
        )
        self.robots_fetches = Counter(
            "crawler_robots_fetches", "robots.txt fetches.", ["outcome"], registry=r
        )
        # Discovery (paginate, follow, sitemap, feed): labels are bounded enums in
        # crawler.config.discovery (ROLES, SKIP_REASONS, BOUNDS).
        self.source_pages = Counter(
            "crawler_source_pages",
            "Pages fetched (200 or not modified), by role: listing, detail, sitemap, feed.",
            ["source", "role"],
            registry=r,
        )
        self.links_found = Counter(
            "crawler_source_links_found",
            "Links found on listing pages and feeds (before filtering).",
            ["source"],
            registry=r,
        )
        self.links_followed = Counter(
            "crawler_source_links_followed",
            "Links queued as detail pages.",
            ["source"],
            registry=r,
        )
        self.links_skipped = Counter(
            "crawler_source_links_skipped",
            "Links not fetched, by reason: seen, excluded, off_host, bound, fresh.",
            ["source", "reason"],
            registry=r,
        )
        self.bound_hits = Counter(
            "crawler_source_bound_hits",
            "Runs that stopped at a configured bound (max_pages, max_per_run, max_urls).",
            ["source", "bound"],
            registry=r,
        )
        # Sessions (`login`), rendering (`render`; crawler_browser_up: watch_browser()), reloads.
        self.logins = Counter(
            "crawler_source_logins", "Logins by result.", ["source", "result"], registry=r
        )
        self.session_age = Gauge(
            "crawler_source_session_age_seconds", "Session age.", ["source"], registry=r
        )
        self.render_seconds = Histogram(
            "crawler_render_seconds",
            "Time to render one page in the browser, its intercepted requests included.",
            ["source"],
            buckets=RENDER_BUCKETS,
            registry=r,
        )
        self.render_requests = Counter(
            "crawler_render_requests", "Requests by outcome.", ["source", "outcome"], registry=r
        )
        self.config_last_reload_successful = Gauge(
            "crawler_config_last_reload_successful", "0 if the last reload was refused.", registry=r
        )
        self.config_last_reload_successful.set(1)
        self.config_last_reload_success_time = Gauge(
            "crawler_config_last_reload_success_timestamp_seconds", "Load time.", registry=r
        )
        self.config_info = Gauge(
            "crawler_config_info", "The running configuration's hash.", ["hash"], registry=r
        )
        self.pull = PullGauges()
        r.register(self.pull)

    def init_fields(self, source: str, fields: Iterable[str], required: bool) -> None:
        """Create a source's field series at 0: the missing-field alert divides their rates."""
        for name in fields:
            self.fields_missing.labels(source, name)
        if required:
            self.records_dropped.labels(source, "missing_required")

    def watch_spool(
        self,
        database_up: Callable[[], bool],
        records: Callable[[], int],
        file_bytes: Callable[[], int],
        oldest_age: Callable[[], float],
    ) -> None:
        """The database and spool gauges, read at scrape time; only with PostgreSQL (a spool)."""
        self.pull.add(
            "crawler_database_up",
            "1 if the last contact with PostgreSQL succeeded.",
            lambda: 1.0 if database_up() else 0.0,
        )
        self.pull.add(
            "crawler_spool_records", "Records in the local spool.", lambda: float(records())
        )
        self.pull.add(
            "crawler_spool_bytes",
            "Size of the spool file(s) in bytes.",
            lambda: float(file_bytes()),
        )
        self.pull.add(
            "crawler_spool_oldest_age_seconds",
            "Age of the oldest spooled record or run; 0 when empty.",
            oldest_age,
        )

    def init_discovery(self, source: str, roles: list[str], bounds: list[str], links: bool) -> None:
        """Create a source's discovery series at 0: the page roles and bounds its configuration
        can produce, and the link counters when it follows links or reads a sitemap (a plain
        source gets one series: its pages, all `listing`)."""
        for role in roles:
            self.source_pages.labels(source, role)
        for bound in bounds:
            self.bound_hits.labels(source, bound)
        if links:
            self.links_found.labels(source)
            self.links_followed.labels(source)
            for reason in SKIP_REASONS:
                self.links_skipped.labels(source, reason)

    def watch_quarantine(self, rows: Callable[[], int]) -> None:
        """The quarantine table's size, read at scrape time."""
        self.pull.add(
            "crawler_quarantined_records",
            "Records in the quarantine table now (crawler quarantine --list).",
            lambda: float(rows()),
        )

    def init_source(self, source: str, hosts: frozenset[str], backend: str) -> None:
        """Create at 0 the source's series that alerts read with rate()/increase(), so their
        first increment is seen; nothing else (each series costs every scrape, on a Pi core).

        Not pre-created, by choice: `crawler_fetch_errors_total` per error kind (the alerts read
        `crawler_source_failed_pages_total`, one per source), requests, extracted records,
        circuit states (a breaker sets its own when created).
        """
        for outcome in ("success", "failure"):
            self.source_runs.labels(source, outcome)
        self.last_success.labels(source)
        self.records_stored.labels(source, backend)
        self.records_spooled.labels(source)
        self.records_refused.labels(source)
        self.records_quarantined.labels(source)
        self.pages.labels(source)
        self.not_modified.labels(source)
        self.failed_pages.labels(source)
        for host in hosts:
            # CrawlerCircuitOpen reads increase() of the openings: at 0, the first one counts.
            self.circuit_transitions.labels(host, "open")

    def init_login(self, source: str) -> None:
        """Create a source's login counters at 0 (CrawlerSourceLoginFailing reads increase())."""
        for result in LOGIN_RESULTS:
            self.logins.labels(source, result)

    def init_render(self, source: str) -> None:
        """Create a rendering source's request counters at 0, one per outcome."""
        for outcome in RENDER_OUTCOMES:
            self.render_requests.labels(source, outcome)

    def watch_browser(self, up: Callable[[], bool]) -> None:
        """crawler_browser_up at scrape time; only with a `browser` (none: no gauge to be 0)."""
        self.pull.add("crawler_browser_up", "1 if the browser last answered.", lambda: float(up()))

    def config_loaded(self, text: str, at: float) -> None:
        """The file `text` now runs, loaded at `at`; its hash: SHA-256's first 12 hex digits."""
        self.config_info.clear()
        self.config_info.labels(hashlib.sha256(text.encode()).hexdigest()[:12]).set(1)
        self.config_last_reload_success_time.set(at)
        self.config_last_reload_successful.set(1)
