"""An estimate of the reply audio still playing at the client (it plays what it was sent)."""

from __future__ import annotations

from avatar.pipeline.clock import Clock


class PlaybackClock:
    """When the client will probably have played all reply audio sent so far."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._until: float | None = None  # None: nothing sent since the last stop

    def sent(self, seconds: float) -> None:
        """``seconds`` more audio went to the client; it plays after what is queued."""
        now = self._clock.now()
        self._until = max(self._until or now, now) + seconds

    def stop(self) -> None:
        """Nothing more plays (the reply was cut)."""
        self._until = None

    def playing(self, grace_s: float = 0.0) -> bool:
        """Reply audio is probably still playing (or stopped less than ``grace_s`` ago)."""
        return self._until is not None and self._clock.now() < self._until + grace_s
