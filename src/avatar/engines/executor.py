"""Blocking inference off the event loop: each local engine owns one worker thread.

``ThreadedEngine.run`` calls a blocking function on the engine's thread; ``ThreadedEngine.stream``
drives a blocking generator there and hands its items to async code through a bounded queue.
Cancellation (closing the async iterator or cancelling its task) sets a flag that the worker
checks between items, so a long generation stops at the next token or chunk.

A :class:`CpuMeter` set with :func:`metering` in a task (and the tasks it starts) adds up the CPU
time the engine threads spend on that task's calls: what a speculative reply cost when dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_DONE = object()


class CpuMeter:
    """CPU seconds (thread CPU time) engine threads spent on calls made under it."""

    def __init__(self) -> None:
        self._seconds = 0.0
        self._lock = threading.Lock()

    @property
    def seconds(self) -> float:
        with self._lock:
            return self._seconds

    def add(self, seconds: float) -> None:
        with self._lock:
            self._seconds += seconds


_METER: ContextVar[CpuMeter | None] = ContextVar("avatar_cpu_meter", default=None)


def metering(meter: CpuMeter) -> None:
    """Count engine calls of the current task, and of the tasks it starts from now on."""
    _METER.set(meter)


@contextlib.contextmanager
def _metered(meter: CpuMeter | None) -> Iterator[None]:
    start = time.thread_time()
    try:
        yield
    finally:
        if meter is not None:
            meter.add(time.thread_time() - start)


class Cancelled(Exception):
    """Raised on an engine thread when the async side went away (a stream's consumer, the
    caller of :meth:`ThreadedEngine.run_cancellable`)."""


class ThreadedEngine:
    """Mixin for local engines: a single-thread executor, lazy ``load()`` and ``unload()``."""

    name: str = "engine"

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{self.name}")
        self._load_lock = threading.Lock()
        self._is_loaded = False

    @property
    def loaded(self) -> bool:
        return self._is_loaded

    def load(self) -> None:
        with self._load_lock:
            if not self._is_loaded:
                self._load()
                self._is_loaded = True

    def unload(self) -> None:
        with self._load_lock:
            if self._is_loaded:
                self._unload()
                self._is_loaded = False

    def _load(self) -> None:
        """Subclasses load weights here."""

    def _unload(self) -> None:
        """Subclasses drop references here."""

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on this engine's thread, loading the engine first if needed."""
        loop = asyncio.get_running_loop()
        meter = _METER.get()

        def call() -> T:
            with _metered(meter):
                self.load()
                return fn(*args, **kwargs)

        return await loop.run_in_executor(self._executor, call)

    async def run_cancellable(
        self,
        fn: Callable[Concatenate[threading.Event, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """As :meth:`run`, for work of several steps: ``fn(cancel, ...)`` finds ``cancel`` set
        once its caller is cancelled, and may stop at its next step (raising :class:`Cancelled`)
        rather than finish work nobody waits for, which would hold up this engine's next call."""
        cancel = threading.Event()
        try:
            return await self.run(fn, cancel, *args, **kwargs)
        except asyncio.CancelledError:
            cancel.set()
            raise

    async def stream(
        self, make_iter: Callable[[threading.Event], Iterator[T]], *, buffer: int = 64
    ) -> AsyncIterator[T]:
        """Iterate ``make_iter(cancel_event)`` on this engine's thread, yielding items here.

        The generator should check ``cancel_event`` between items; the queue between the threads
        is bounded so a slow consumer slows the producer instead of growing memory.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=buffer)
        cancel = threading.Event()
        meter = _METER.get()

        counted = [0.0]  # the worker thread's CPU time already added to the meter

        def count_cpu() -> None:
            # before each hand-over, so an item's cost is counted by the time it arrives
            if meter is not None:
                now = time.thread_time()
                meter.add(now - counted[0])
                counted[0] = now

        def put(item: Any) -> None:
            # Blocks the worker while the consumer is slow; gives up only when cancelled. The
            # same future is awaited until it completes, so an item is never delivered twice.
            count_cpu()
            fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            while True:
                try:
                    fut.result(timeout=0.5)
                    return
                except TimeoutError:
                    if cancel.is_set():
                        fut.cancel()
                        raise Cancelled from None

        def produce() -> None:
            counted[0] = time.thread_time()  # waiting in put() sleeps: no CPU counted
            try:
                produce_all()
            finally:
                count_cpu()

        def produce_all() -> None:
            try:
                self.load()
                for item in make_iter(cancel):
                    if cancel.is_set():
                        break
                    put(item)
                if not cancel.is_set():
                    put(_DONE)
            except Cancelled:
                return
            except BaseException as exc:  # handed to the consumer, re-raised there
                if not cancel.is_set():
                    with contextlib.suppress(Cancelled):
                        put(_Failure(exc))

        worker = loop.run_in_executor(self._executor, produce)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            cancel.set()
            # Drain so a producer blocked on put() sees the cancel promptly.
            while not queue.empty():
                queue.get_nowait()
            del worker  # exits on its own at the next item; never awaited, so close() is prompt

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
