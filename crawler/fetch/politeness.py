"""Per-host politeness: a minimum delay between the starts of two requests to one host.

The pacer is shared by every source of the process, so two sources crawling one host together
still leave the configured gap between requests. Each caller reserves the next free slot of its
host before sleeping, so concurrent callers queue up one gap apart instead of all waking at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class HostPacer:
    """Spaces requests to each host at least `delay` seconds apart (delay chosen per call)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next: dict[str, float] = {}

    def reserve(self, host: str, delay: float) -> float:
        """Book the host's next slot; return how long to sleep until it."""
        now = self._clock()
        start = max(now, self._next.get(host, now))
        self._next[host] = start + delay
        return start - now

    async def wait(self, host: str, delay: float) -> None:
        pause = self.reserve(host, delay)
        if pause > 0:
            await asyncio.sleep(pause)
