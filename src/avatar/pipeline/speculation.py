"""Speculative replies: start at a pause, hold everything back, release or drop.

At the first short pause the session starts the reply on the utterance so far as the current
:class:`Generation`, with a :class:`HeldOutput`: its events (transcript, reply text, audio) are
queued, nothing is sent, and the turn is not stored until the end of turn is confirmed. Then
:meth:`Speculation.release` sends what was queued, in order, and the reply goes on live. If the
user goes on speaking, :meth:`Speculation.drop` cancels the generation and counts the waste:
its clock time, and the CPU time the engine threads spent on it (a :class:`CpuMeter` per held
reply, read when the turn ends, so work still finishing on an engine thread at the drop counts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from avatar.engines.executor import CpuMeter, metering
from avatar.pipeline.clock import Clock
from avatar.pipeline.generation import Generation

Deliver = Callable[[], Awaitable[None]]


class HeldOutput:
    """A reply's output: sent at once when live, queued while held, flushed in order on release."""

    def __init__(self, *, held: bool) -> None:
        self._queue: list[Deliver] | None = [] if held else None
        self._released = asyncio.Event()
        if not held:
            self._released.set()
        self.work_done_at: float | None = None  # when the held work finished (cost accounting)

    @property
    def held(self) -> bool:
        return not self._released.is_set()

    async def send(self, deliver: Deliver) -> None:
        """Run ``deliver`` now, or after the release (in the order sent)."""
        if self._queue is None:
            await deliver()
        else:
            self._queue.append(deliver)

    async def release(self) -> None:
        queue = self._queue or []
        while queue:  # deliveries added during the flush join its end
            await queue.pop(0)()
        self._queue = None
        self._released.set()

    async def wait(self) -> None:
        """Return once released (at once for live output)."""
        await self._released.wait()


@dataclass(slots=True)
class SpeculationCounters:
    """Speculative replies of a session: started, released (hits), dropped (wasted), the clock
    time the dropped ones ran (from their start to their drop or finish) and the CPU time engine
    threads spent on them."""

    started: int = 0
    hits: int = 0
    wasted: int = 0
    wasted_ms: float = 0.0
    wasted_cpu_ms: float = 0.0  # counted when the turn after them ends

    def metrics(self) -> dict[str, float]:
        return {
            "speculations": float(self.started),
            "speculation_hits": float(self.hits),
            "speculations_wasted": float(self.wasted),
            "speculation_wasted_ms": round(self.wasted_ms, 1),
            "speculation_wasted_cpu_ms": round(self.wasted_cpu_ms, 1),
        }


class Speculation:
    """At most one held reply per session, run as the current generation of ``replies``."""

    def __init__(self, replies: Generation, clock: Clock) -> None:
        self.replies, self.clock = replies, clock
        self.counters = SpeculationCounters()  # the session's totals
        self._since_turn = SpeculationCounters()  # waste since the last turn ended
        self._output: HeldOutput | None = None
        self._meter = CpuMeter()
        self._dropped: list[CpuMeter] = []  # the held replies dropped since the last turn
        self._started_at = 0.0
        self.text_probability: asyncio.Future[float | None] | None = None

    @property
    def holding(self) -> bool:
        return self._output is not None and self._output.held

    def start(
        self, run: Callable[[int, HeldOutput], Coroutine[Any, Any, None]]
    ) -> asyncio.Future[float | None]:
        """Begin ``run(generation, output)`` held back; the future of its text probability."""
        output, meter = HeldOutput(held=True), CpuMeter()
        self._output, self._meter, self._started_at = output, meter, self.clock.now()
        self.text_probability = asyncio.get_running_loop().create_future()
        self.counters.started += 1

        async def metered(generation: int) -> None:
            metering(meter)  # this task's engine calls, and those of the tasks it starts
            await run(generation, output)

        self.replies.begin(metered)
        return self.text_probability

    def heard(self, probability: float | None) -> None:
        """The held reply's transcript gave this end-of-turn probability (None: no words)."""
        if self.text_probability is not None and not self.text_probability.done():
            self.text_probability.set_result(probability)

    async def release(self, metrics: MutableMapping[str, Any], decided: Mapping[str, Any]) -> None:
        """Send the held reply now, its turn ``metrics`` updated with how the turn ended."""
        output = self._output
        if output is None or not output.held:
            return
        self.counters.hits += 1
        metrics.update(decided)
        metrics.update({"speculative": 1.0, **self._waste_metrics()})
        self._output = None
        await output.release()

    async def drop(self) -> None:
        """The user went on: cancel the held reply (nothing of it was sent or stored)."""
        output = self._output
        if output is None or not output.held:
            return
        self._output = None
        self.heard(None)
        await self.replies.cancel()
        done_at = output.work_done_at or self.clock.now()
        cost_ms = max(0.0, done_at - self._started_at) * 1000
        for counters in (self.counters, self._since_turn):
            counters.wasted += 1
            counters.wasted_ms += cost_ms
        self._dropped.append(self._meter)

    def turn_metrics(self) -> dict[str, float]:
        """For a turn that was not speculated: the waste since the last turn."""
        return {"speculative": 0.0, **self._waste_metrics()}

    def _waste_metrics(self) -> dict[str, float]:
        since, self._since_turn = self._since_turn, SpeculationCounters()
        dropped, self._dropped = self._dropped, []
        since.wasted_cpu_ms = sum(meter.seconds for meter in dropped) * 1000
        self.counters.wasted_cpu_ms += since.wasted_cpu_ms
        return {
            "speculations_wasted": float(since.wasted),
            "speculation_wasted_ms": round(since.wasted_ms, 1),
            "speculation_wasted_cpu_ms": round(since.wasted_cpu_ms, 1),
        }
