"""Parts start and stop as async context managers; background tasks are awaited on the way out."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from crawler.lifecycle import Part, background


class Recorder(Part):
    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail

    async def open(self) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} cannot open")
        self.log.append(f"open {self.name}")

    async def close(self) -> None:
        self.log.append(f"close {self.name}")


async def test_a_stack_of_parts_closes_what_was_opened_in_reverse() -> None:
    log: list[str] = []
    with pytest.raises(RuntimeError, match="c cannot open"):
        async with contextlib.AsyncExitStack() as stack:
            for name in ("a", "b"):
                await stack.enter_async_context(Recorder(name, log))
            await stack.enter_async_context(Recorder("c", log, fail=True))
    assert log == ["open a", "open b", "close b", "close a"]


async def test_background_task_is_cancelled_and_awaited() -> None:
    stopped = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup that needs the loop
            stopped.set()

    async with background(forever(), "t") as task:
        await asyncio.sleep(0)
        assert not task.done()
    assert task.cancelled() and stopped.is_set()  # finished, not merely asked to
