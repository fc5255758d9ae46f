"""Every error the crawler raises, and the one taxonomy of fetch failures.

    CrawlerError
    ├── ConfigError          the configuration file is wrong (names file, line, key)
    ├── FetchError           one URL could not be fetched or extracted (carries an ErrorKind)
    │   └── BrowserError     the browser rendering it is unreachable or went away (`browser`)
    ├── StoreError           the store failed for a reason retrying will not fix
    │   ├── StoreDataError   a record in the batch is refused (its data): quarantined alone
    │   └── StoreUnavailable the database cannot be reached now (the spool takes over)
    │       └── StoreTimeout it answers, but not within the time allowed (a lease renewal)
    └── SpoolFull            the spool is at its size cap; records are refused, not dropped

Third-party exceptions (aiohttp, psycopg, sqlite3, the browser's CDP answers) are translated
into these at the edge (`raise ... from exc`), so the core only ever catches ours.
"""

from __future__ import annotations

import enum

# The command line's exit statuses (0: success).
EXIT_FAILED = 1  # a run failed, or the command could not do its work
EXIT_CONFIG = 2  # the configuration or the arguments are wrong


class ErrorKind(str, enum.Enum):
    """Why a fetch failed; used alike as the `error_kind` log field and metric label."""

    TIMEOUT = "timeout"
    CONNECT = "connect"
    DNS = "dns"
    TLS = "tls"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    TOO_LARGE = "too_large"
    BAD_CONTENT = "bad_content"
    ROBOTS_DENIED = "robots_denied"
    CIRCUIT_OPEN = "circuit_open"
    PARSE = "parse"
    REDIRECT = "redirect"
    # A destination that is not a public address and was not written by the user (a redirect
    # to the router, a name resolving to 127.0.0.1): refused before connecting (netguard).
    BLOCKED_ADDRESS = "blocked_address"
    STORAGE = "storage"
    SECRET = "secret"  # a source's header file, token or password unreadable: the run fails
    LOGIN = "login"  # a source's login failed, or its session ended and no login is left
    RENDER_TIMEOUT = "render_timeout"  # a `render` page not rendered within its timeout
    BROWSER = "browser"  # the browser is unreachable, crashed or disconnected mid-render
    INTERNAL = "internal"  # an exception no layer expected (a bug): the run fails, not the process

    def __str__(self) -> str:
        return self.value


class CrawlerError(Exception):
    """Base of every error raised by the crawler."""


class ConfigProblem:
    """One thing wrong in a configuration file, printed as `FILE:LINE: key: message`."""

    __slots__ = ("file", "key", "line", "message")

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        self.file, self.line, self.key, self.message = file, line, key, message

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(CrawlerError):
    """Raised when the configuration file cannot be read or does not validate."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class FetchError(CrawlerError):
    """Raised when a URL could not be fetched, or its body could not be used."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.kind, self.status, self.retry_after = kind, status, retry_after
        super().__init__(f"{kind.value}: {message}")


class BrowserError(FetchError):
    """Raised when the browser cannot be reached, drops the connection or refuses a call."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorKind.BROWSER, message)


class StoreError(CrawlerError):
    """Raised when the store rejects a batch for a reason a retry will not fix."""


class StoreDataError(StoreError):
    """Raised when the store or the spool refuses a batch because of a record in it (retrying
    the same data cannot help): it is bisected and the refused record quarantined."""


class StoreUnavailable(StoreError):
    """Raised when the database cannot be reached now (refused, timed out, gone)."""


class StoreTimeout(StoreUnavailable):
    """Raised when a transaction did not finish in its time (no answer, or the server's own
    statement or lock timeout): the database may be there, only slow."""


class SpoolFull(CrawlerError):
    """Raised when the spool is at its size cap and cannot take a batch."""


class SecretUnavailable(CrawlerError):
    """Raised when a source's header file, token or password cannot be read for a run."""


class LoginFailed(CrawlerError):
    """Raised when a source's login fails (refused, wrong password, form not found, `logged_in`
    absent): the run fails as `login`. The message names the URL and the check, never a secret."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        self.url, self.reason, self.status = url, reason, status
        super().__init__(f"login at {url} failed: {reason}")
