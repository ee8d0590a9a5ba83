"""Which reply is current: one counter bumped in one place, one check for stale output.

Every reply runs as a task tagged with a generation id. :meth:`Generation.begin` starts a new
one (the previous id becomes stale); :meth:`Generation.cancel` makes the current one stale and
cancels its task. Output of a stale generation is dropped (:meth:`Generation.guard`), so a reply
cut off mid-chunk never reaches the client. A speculative reply (started before the end of the
turn is certain) is just a generation whose output is held back: ``cancel`` drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from avatar.pipeline.events import Emit, SessionEvent


class Generation:
    """The current reply's generation id and task (in the manner of a cancel scope)."""

    def __init__(self) -> None:
        self._id = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def current(self) -> int:
        return self._id

    @property
    def running(self) -> bool:
        """The current generation's task is still working."""
        return self._task is not None and not self._task.done()

    def is_current(self, generation: int) -> bool:
        return generation == self._id

    def begin(self, run: Callable[[int], Coroutine[Any, Any, None]]) -> int:
        """Start a new generation running ``run(id)``; the previous one becomes stale."""
        self._id += 1
        self._task = asyncio.create_task(run(self._id))
        return self._id

    async def cancel(self) -> bool:
        """Make the current generation stale and cancel its task; whether it was running."""
        self._id += 1
        task, self._task = self._task, None
        if task is None or task.done():
            return False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    async def settle(self) -> None:
        """Wait for the current task without cancelling it (a reply that is being stored)."""
        if self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def guard(self, generation: int, emit: Emit) -> Emit:
        """``emit`` for output of ``generation``: dropped once that generation is stale."""

        async def guarded(event: SessionEvent) -> None:
            if generation == self._id:
                await emit(event)

        return guarded
