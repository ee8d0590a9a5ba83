"""Voice sessions per GPU, and whether hq TTS may be used under the current load.

Each voice session that runs on GPU engines takes a seat on one card: the card with the fewest
sessions relative to its cap, ties broken by free VRAM (so a new session lands on the emptier
card). A card whose free memory is under ``min_free_mb`` takes no new session; when every card is
at its cap :meth:`GpuAdmission.admit` raises :class:`GpuBusy` (HTTP 503 with ``Retry-After``).
On a machine without GPUs every session is admitted (``max_sessions`` still bounds them).

:func:`hq_allowed` is the load gate the TTS mode selection consults: ``auto`` falls back to the
fast engine once the sessions pass ``hq_max_load`` of the capacity or the hq engine's card runs
low on memory; the reason is reported with the choice.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from avatar.errors import AvatarError
from avatar.system.gpus import GpuReading

DEFAULT_SESSIONS_PER_GPU = 8
DEFAULT_HQ_MAX_LOAD = 0.75
DEFAULT_MIN_FREE_MB = 1024.0  # a card with less free memory takes no new session
DEFAULT_READINGS_MAX_AGE_S = 2.0  # admit() re-reads NVML when its readings are older than this
HQ_MIN_FREE_MB = 2048.0  # hq TTS (CosyVoice2) needs room for its activations


class GpuBusy(AvatarError):
    """Every GPU has as many voice sessions as it may take (HTTP 503, ``Retry-After``)."""

    code = "gpu_busy"
    http_status = 503

    def __init__(self, message: str, *, hint: str | None = None, retry_after_s: float = 30.0):
        super().__init__(
            message,
            hint=hint
            or "retry later, or raise AVATAR_GPU__SESSIONS_PER_GPU if the"
            " cards have headroom (see /api/system/info)",
        )
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


@dataclass(frozen=True, slots=True)
class CardLoad:
    index: int
    name: str
    sessions: int
    cap: int
    free_mb: float

    @property
    def fraction(self) -> float:
        return self.sessions / self.cap if self.cap else 1.0


@dataclass(frozen=True, slots=True)
class Load:
    """A snapshot of the sessions on each card (empty ``cards``: no GPU)."""

    cards: tuple[CardLoad, ...]

    @property
    def sessions(self) -> int:
        return sum(c.sessions for c in self.cards)

    @property
    def capacity(self) -> int:
        return sum(c.cap for c in self.cards)

    @property
    def fraction(self) -> float:
        return self.sessions / self.capacity if self.capacity else 0.0

    def card(self, index: int) -> CardLoad | None:
        return next((c for c in self.cards if c.index == index), None)


@dataclass(frozen=True, slots=True)
class Seat:
    """Where a session runs: a GPU index (None: no GPU) and why."""

    session_id: str
    gpu_index: int | None
    reason: str


def hq_allowed(
    load: Load,
    *,
    hq_gpu: int | None = None,
    max_load: float = DEFAULT_HQ_MAX_LOAD,
    min_free_mb: float = HQ_MIN_FREE_MB,
) -> tuple[bool, str]:
    """Whether hq TTS may serve the next reply under ``load``, and why (pure: easy to test)."""
    if not load.cards:
        return True, "no GPU load to weigh"
    if load.fraction >= max_load:
        return False, (
            f"GPU load {load.sessions}/{load.capacity} sessions is at or over"
            f" {max_load:.0%}: fast TTS keeps latency down"
        )
    card = load.card(hq_gpu) if hq_gpu is not None else None
    if card is not None and card.free_mb < min_free_mb:
        return False, f"GPU {card.index} has {card.free_mb:.0f} MB free, under {min_free_mb:.0f} MB"
    if card is not None and card.fraction >= max_load:
        return False, f"GPU {card.index} holds {card.sessions}/{card.cap} sessions"
    return True, f"GPU load {load.sessions}/{load.capacity} sessions is under {max_load:.0%}"


class GpuAdmission:
    """Seats voice sessions on GPUs (thread-safe); see the module docstring."""

    def __init__(
        self,
        readings: list[GpuReading],
        *,
        sessions_per_gpu: int = DEFAULT_SESSIONS_PER_GPU,
        hq_max_load: float = DEFAULT_HQ_MAX_LOAD,
        min_free_mb: float = DEFAULT_MIN_FREE_MB,
        reread: Callable[[], list[GpuReading]] | None = None,
        max_age_s: float = DEFAULT_READINGS_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``reread`` (e.g. :func:`avatar.system.gpus.gpu_readings`) lets :meth:`admit` see
        memory that engines, sessions or other processes took since the last reading."""
        if sessions_per_gpu < 1:
            raise ValueError("sessions_per_gpu must be at least 1")
        self.sessions_per_gpu = sessions_per_gpu
        self.hq_max_load = hq_max_load
        self.min_free_mb = min_free_mb
        self._reread = reread
        self._max_age_s = max_age_s
        self._clock = clock
        self._readings = {r.index: r for r in readings}
        self._read_at = clock()
        self._seats: dict[str, int | None] = {}
        self._lock = threading.Lock()

    def update_readings(self, readings: list[GpuReading]) -> None:
        """Fresh NVML readings (free memory changes as engines load and sessions run)."""
        with self._lock:
            self._readings = {r.index: r for r in readings}
            self._read_at = self._clock()

    def _refresh_if_stale(self) -> None:
        if self._reread is not None and self._clock() - self._read_at >= self._max_age_s:
            self.update_readings(self._reread())

    def _count(self, index: int) -> int:
        return sum(1 for seat in self._seats.values() if seat == index)

    def admit(self, session_id: str) -> Seat:
        """Seat a new session on the emptier card; raises :class:`GpuBusy` when all are full."""
        self._refresh_if_stale()
        with self._lock:
            if session_id in self._seats:
                return Seat(session_id, self._seats[session_id], "already seated")
            if not self._readings:
                self._seats[session_id] = None
                return Seat(session_id, None, "no GPU: the session uses CPU engines")
            open_cards = [
                r
                for r in self._readings.values()
                if self._count(r.index) < self.sessions_per_gpu and r.free_mb >= self.min_free_mb
            ]
            if not open_cards:
                raise GpuBusy(self._full_message())
            best = min(open_cards, key=lambda r: (self._count(r.index), -r.free_mb, r.index))
            before = self._count(best.index)
            self._seats[session_id] = best.index
        return Seat(
            session_id,
            best.index,
            f"GPU {best.index} had the fewest sessions ({before}/{self.sessions_per_gpu})"
            f" and {best.free_mb:.0f} MB free",
        )

    def _full_message(self) -> str:
        parts = [
            f"GPU {r.index}: {self._count(r.index)}/{self.sessions_per_gpu} sessions,"
            f" {r.free_mb:.0f} MB free"
            for r in sorted(self._readings.values(), key=lambda r: r.index)
        ]
        return "every GPU is full (" + "; ".join(parts) + ")"

    def release(self, session_id: str) -> None:
        with self._lock:
            self._seats.pop(session_id, None)

    def load(self) -> Load:
        with self._lock:
            cards = tuple(
                CardLoad(r.index, r.name, self._count(r.index), self.sessions_per_gpu, r.free_mb)
                for r in sorted(self._readings.values(), key=lambda r: r.index)
            )
        return Load(cards)

    def hq_allowed(self, hq_gpu: int | None = None) -> tuple[bool, str]:
        """:func:`hq_allowed` on the current load (``hq_gpu``: the card hq TTS runs on)."""
        return hq_allowed(self.load(), hq_gpu=hq_gpu, max_load=self.hq_max_load)

    def status(self) -> dict[str, object]:
        """JSON-able: sessions per card, caps, free memory."""
        load = self.load()
        return {
            "sessions_per_gpu": self.sessions_per_gpu,
            "sessions": load.sessions,
            "capacity": load.capacity,
            "cards": [asdict(c) for c in load.cards],
        }
