"""The session's sense of time, injected so turns can run on a virtual clock in tests.

Everything in :mod:`avatar.pipeline` that reads the time or waits asks a :class:`Clock`; the
server uses :class:`MonotonicClock`, the turn tests :class:`avatar.testing.clock.FakeClock`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds and a sleep that follows them."""

    def now(self) -> float:
        """Monotonic seconds (only differences mean anything)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""


class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


MONOTONIC = MonotonicClock()
