"""How the parts of a process start and stop: each is an async context manager.

`Part` gives a class with `open()` and `close()` its `async with`, so the service is one
`AsyncExitStack` of `enter_async_context` calls that closes, in reverse order, exactly what was
opened, whatever happens (a crash half-way through start-up included). `background()` is the
same for a task: on leaving, the task is cancelled *and awaited*, so nothing runs on behind the
part that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from types import TracebackType
from typing import Any, TypeVar

_P = TypeVar("_P", bound="Part")


class Part:
    """A part of the process with an `open()` and a `close()`; `async with part:` runs both."""

    async def open(self) -> None:
        """Acquire what the part needs (files, connections, tasks)."""

    async def close(self) -> None:
        """Release it; safe to call when `open()` failed half-way."""

    async def __aenter__(self: _P) -> _P:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


@contextlib.asynccontextmanager
async def background(
    coro: Coroutine[Any, Any, None], name: str
) -> AsyncIterator[asyncio.Task[None]]:
    """Run `coro` as a task for the block; then cancel it and wait until it has stopped."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield task
    finally:
        await stop_task(task)


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
