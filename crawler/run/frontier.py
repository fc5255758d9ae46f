"""A run's frontier: the tasks it has still to do (`Task`), bounded and deduplicated
(`Frontier`), and the listings waiting for their detail pages to end (`Group`); dropped at the
run's end."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from crawler.config.discovery import DETAIL
from crawler.sources.discover import Chain


class Group:
    """A listing page waiting for the detail pages it led to.

    Its own validators (and so "not modified, links not re-extracted" next time) are recorded
    only once every followed detail page ended well, and `on_done` runs then. A detail page
    that failed or was left out by the bound leaves the listing unrecorded, so the next run
    reads its links again (the detail pages' own `refresh_after` keeps that cheap).
    """

    def __init__(self, on_done: Callable[[], None]) -> None:
        self.on_done: Callable[[], None] | None = on_done
        self.open_children = 0
        self.sealed = False
        self.failed = False

    def add(self) -> None:
        self.open_children += 1

    def child_done(self, ok: bool) -> None:
        self.open_children -= 1
        if not ok:
            self.failed = True
        self._maybe_finish()

    def seal(self, complete: bool = True) -> None:
        """Every child is known (`complete` False: some were left out by a bound)."""
        self.sealed = True
        if not complete:
            self.failed = True
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.sealed and self.open_children == 0 and self.on_done is not None:
            callback, self.on_done = self.on_done, None
            if not self.failed:
                callback()


@dataclass
class Task:
    """One URL a run will fetch, and what it is for."""

    url: str
    role: str
    chain: Chain | None = None  # a listing page: its pagination chain
    group: Group | None = None  # a detail page: the listing that waits for it
    lastmod: float | None = None  # a page from a sitemap: its <lastmod> (Unix time)
    depth: int = 0  # a sitemap: how deep in nested indexes


@dataclass
class Frontier:
    """The run's URLs still to fetch. Detail pages go first, so the queue stays short (a
    listing's links are fetched before the next listing adds more)."""

    _first: deque[Task] = field(default_factory=deque)
    _later: deque[Task] = field(default_factory=deque)
    _busy: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def push(self, task: Task) -> None:
        (self._first if task.role == DETAIL else self._later).append(task)
        self._changed.set()

    def __len__(self) -> int:
        return len(self._first) + len(self._later)

    async def get(self) -> Task | None:
        """The next task, or None once the queue is empty and no task is being worked on
        (nothing can add more) or the frontier was closed. Call `done()` after each task."""
        while True:
            if self.closed:
                return None
            if self._first or self._later:
                self._busy += 1
                return (self._first or self._later).popleft()
            if self._busy == 0:
                self._changed.set()  # wake the other workers: they end too
                return None
            self._changed.clear()
            await self._changed.wait()

    def done(self) -> None:
        self._busy -= 1
        self._changed.set()

    def close(self) -> None:
        """Drop what is queued (stopping, or a failed run): workers end after their task."""
        self.closed = True
        self._first.clear()
        self._later.clear()
        self._changed.set()
