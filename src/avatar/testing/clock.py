"""A virtual clock for turn tests: time moves only when the test advances it.

:class:`FakeClock` implements :class:`avatar.pipeline.clock.Clock`. Sleepers (scripted engines,
session timers) wake in deadline order as :meth:`FakeClock.advance` passes their deadlines, and
the tasks they wake run before time moves on, so a timeline runs the same way on every machine.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

SETTLE_STEPS = 50  # event-loop passes that let woken tasks run to their next wait


async def settle() -> None:
    """Let every runnable task run until it waits again (on the clock, a queue, or input)."""
    for _ in range(SETTLE_STEPS):
        await asyncio.sleep(0)


class FakeClock:
    """Monotonic seconds that advance only in :meth:`advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self._now + seconds, next(self._order), wake))
        await wake

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its deadline and letting it run."""
        target = self._now + seconds
        await settle()
        while self._timers and self._timers[0][0] <= target:
            when, _, wake = heapq.heappop(self._timers)
            self._now = max(self._now, when)
            if not wake.done():  # a cancelled sleeper's future is done already
                wake.set_result(None)
                await settle()
        self._now = target
        await settle()
