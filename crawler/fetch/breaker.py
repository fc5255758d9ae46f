"""Per-host circuit breakers: stop calling a host that keeps failing, then probe it again.

Modelled on Resilience4j's count-based breaker, which the user runs elsewhere:

* CLOSED: calls pass; the outcomes of the last `window` calls are kept. Once at least
  `min_calls` are known (capped at `window`) and the share of failures reaches
  `failure_ratio`, the breaker opens.
* OPEN: calls fail fast with `ErrorKind.CIRCUIT_OPEN` for `open_for` seconds, then the breaker
  half-opens by itself (a timer, so the state metric does not sit at "open" until the next run).
* HALF_OPEN: `half_open_calls` probes pass, further calls fail fast; when every probe has
  finished, the breaker closes if their failure share is below `failure_ratio`, else reopens.

What counts as a failure is the caller's decision (the fetcher counts connection problems,
timeouts, 5xx and 429: signs the host is unwell, not that one page is bad).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import time
from collections.abc import Callable

from crawler.config.fetch import CircuitConfig
from crawler.errors import ErrorKind, FetchError
from crawler.observability.metrics import Metrics

log = logging.getLogger("crawler.breaker")


class State(enum.Enum):
    """Breaker state; the value is what `crawler_circuit_state` exports."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class CircuitBreaker:
    """The breaker of one host."""

    def __init__(
        self,
        host: str,
        config: CircuitConfig,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host, self.config, self.metrics, self._clock = host, config, metrics, clock
        self.state = State.CLOSED
        self._window: collections.deque[bool] = collections.deque(maxlen=config.window)
        self._opened_at = 0.0
        self._probes_left = 0  # half-open permits not yet handed out
        self._probe_results: list[bool] = []
        self._timer: asyncio.TimerHandle | None = None
        # Bumped on every transition; a call's outcome counts only in the state it started in
        # (a slow call begun while closed must not pass for a half-open probe).
        self._generation = 0
        metrics.circuit_state.labels(host).set(State.CLOSED.value)

    # -- calls -------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise FetchError(CIRCUIT_OPEN) if a call would be refused now (takes no permit)."""
        self._maybe_half_open()
        if self.state is State.OPEN or (self.state is State.HALF_OPEN and self._probes_left <= 0):
            raise self._refusal()

    def acquire(self) -> int:
        """Take permission for one call; pass the permit to `record()` or `release()`."""
        self.check()
        if self.state is State.HALF_OPEN:
            self._probes_left -= 1
        return self._generation

    def release(self, permit: int) -> None:
        """Give back a permit whose call ended without an outcome (cancelled)."""
        if permit == self._generation and self.state is State.HALF_OPEN:
            self._probes_left += 1

    def record(self, permit: int, failed: bool) -> None:
        """The outcome of a call made with `permit` from `acquire()`."""
        if permit != self._generation:
            return  # began in an earlier state; its outcome no longer says anything
        if self.state is State.CLOSED:
            self._window.append(failed)
            n = len(self._window)
            if n >= min(self.config.min_calls, self.config.window):
                failures = sum(self._window)
                if failures / n >= self.config.failure_ratio:
                    self._transition(State.OPEN, failures=failures, calls=n)
        elif self.state is State.HALF_OPEN:
            self._probe_results.append(failed)
            if len(self._probe_results) >= self.config.half_open_calls:
                failures = sum(self._probe_results)
                calls = len(self._probe_results)
                if failures / calls >= self.config.failure_ratio:
                    self._transition(State.OPEN, failures=failures, calls=calls)
                else:
                    self._transition(State.CLOSED, failures=failures, calls=calls)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- internals ---------------------------------------------------------------------------

    def _refusal(self) -> FetchError:
        if self.state is State.OPEN:
            left = max(0.0, self._opened_at + self.config.open_for - self._clock())
            why = f"circuit for {self.host} is open (half-opens in {left:.1f}s)"
        else:
            why = f"circuit for {self.host} is half-open and its probes are in flight"
        return FetchError(ErrorKind.CIRCUIT_OPEN, why)

    def _maybe_half_open(self) -> None:
        if self.state is State.OPEN and self._clock() >= self._opened_at + self.config.open_for:
            self._transition(State.HALF_OPEN)

    def _on_timer(self) -> None:
        # Not `_maybe_half_open`: the loop may run a timer a hair before its time.
        self._timer = None
        if self.state is State.OPEN:
            self._transition(State.HALF_OPEN)

    def _transition(self, state: State, *, failures: int = 0, calls: int = 0) -> None:
        previous, self.state = self.state, state
        self._generation += 1
        self._window.clear()
        self._probe_results = []
        self.close()
        if state is State.OPEN:
            self._opened_at = self._clock()
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # used outside a loop (unit tests): half-open lazily
                pass
            else:
                self._timer = loop.call_later(self.config.open_for, self._on_timer)
        elif state is State.HALF_OPEN:
            self._probes_left = self.config.half_open_calls
        m = self.metrics
        m.circuit_state.labels(self.host).set(state.value)
        m.circuit_transitions.labels(self.host, state.name.lower()).inc()
        log.log(
            logging.WARNING if state is State.OPEN else logging.INFO,
            "circuit breaker state changed",
            extra={
                "host": self.host,
                "state": state.name.lower(),
                "previous_state": previous.name.lower(),
                "failures": failures,
                "calls": calls,
                "open_for_s": self.config.open_for if state is State.OPEN else None,
            },
        )


class Breakers:
    """One breaker per host, created on first use."""

    def __init__(
        self, config: CircuitConfig, metrics: Metrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config, self.metrics, self._clock = config, metrics, clock
        self._by_host: dict[str, CircuitBreaker] = {}

    def get(self, host: str) -> CircuitBreaker:
        b = self._by_host.get(host)
        if b is None:
            b = self._by_host[host] = CircuitBreaker(host, self.config, self.metrics, self._clock)
        return b

    def close(self) -> None:
        for b in self._by_host.values():
            b.close()
