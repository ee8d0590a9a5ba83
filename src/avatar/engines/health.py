"""Which engines are failing right now, as the calls that use them see it (for ``/health``).

Load errors are the hub's ``SlotState.error``; this is the other half: an engine that loaded (a
remote one always has) but whose calls fail: server down, HTTP errors, deadlines, broken or
malformed streams, out of memory. A slot counts as failing from its first failed call until its
next call that works (a token, a piece of audio, a transcript); the voice pipeline reports both.
Nothing probes in the background, so a backend that recovers while nobody talks to it is shown
as failing until the next turn uses it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from avatar.errors import EngineFailed, EngineTimeout, EngineUnavailable
from avatar.redaction import strip_credentials
from avatar.system.cuda import EngineOverloaded

ENGINE_ERRORS = (EngineUnavailable, EngineTimeout, EngineFailed, EngineOverloaded)


@dataclass(frozen=True, slots=True)
class EngineFault:
    """The last failure of one slot's calls."""

    code: str
    message: str
    since: float  # wall-clock time of the first failure in this run of failures
    failures: int  # failed calls in a row


class EngineHealth:
    """Per slot, the failure its calls are in, if any (one per engine hub)."""

    def __init__(self) -> None:
        self._faults: dict[str, EngineFault] = {}

    def failed(self, slot: str, exc: BaseException) -> None:
        """Record a failed call; errors that are not about the engine are ignored."""
        if not isinstance(exc, ENGINE_ERRORS):
            return
        before = self._faults.get(slot)
        self._faults[slot] = EngineFault(
            exc.code,
            strip_credentials(exc.message),
            before.since if before else time.time(),
            (before.failures if before else 0) + 1,
        )

    def worked(self, slot: str) -> None:
        """A call of this slot produced output: it is not failing (any more)."""
        self._faults.pop(slot, None)

    @contextmanager
    def watch(self, slot: str) -> Iterator[None]:
        """Record an engine error raised inside the block as a failure of ``slot``."""
        try:
            yield
        except ENGINE_ERRORS as exc:
            self.failed(slot, exc)
            raise

    def faults(self) -> dict[str, EngineFault]:
        """The failing slots now."""
        return dict(self._faults)
