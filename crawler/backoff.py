"""Backoff: exponential delays with jitter and a give-up time, for every retry loop.

"Decorrelated" full jitter (delay drawn between base and 3x the previous delay, capped) keeps
many clients that failed together from retrying together.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    """Successive retry delays: exponential, jittered, capped, with an optional deadline."""

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 60.0,
        give_up_after: float | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base, self.cap, self.give_up_after = base, cap, give_up_after
        self._rng = rng or random.Random()
        self._clock = clock
        self._delay = 0.0
        self.attempt = 0
        self._started = clock()

    def reset(self) -> None:
        self._delay = 0.0
        self.attempt = 0
        self._started = self._clock()

    def next_delay(self) -> float:
        """The delay before the next attempt (grows until `cap`)."""
        self.attempt += 1
        upper = max(self.base, self._delay * 3)
        self._delay = min(self.cap, self._rng.uniform(self.base, upper))
        return self._delay

    def expired(self, extra: float = 0.0) -> bool:
        """True when waiting `extra` more seconds would pass the give-up time."""
        if self.give_up_after is None:
            return False
        return self._clock() - self._started + extra > self.give_up_after
