"""TTS mode selection: a ``fast`` engine always, an ``hq`` engine when configured.

``auto`` uses hq only while it is configured, has not failed recently, and its smoothed
first-audio latency stays within ``hq_latency_budget_ms``. Once auto has fallen back to fast
because hq was slow, it re-probes hq every ``probe_interval_s`` so a recovered server is used
again (otherwise the latency estimate would never be refreshed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from avatar.engines.base import TextToSpeech
from avatar.engines.registry import create_engine
from avatar.errors import AvatarError, EngineUnavailable
from avatar.models.store import ModelStore
from avatar.settings import TtsSettings

TtsMode = Literal["fast", "hq", "auto"]
EWMA_ALPHA = 0.3  # weight of the newest first-audio observation
FAILURE_COOLDOWN_S = 30.0
PROBE_INTERVAL_S = 60.0


class TtsSelection(NamedTuple):
    """The engine to speak with, the mode it stands for, and why it was chosen."""

    engine: TextToSpeech
    mode_used: Literal["fast", "hq"]
    reason: str


@dataclass(slots=True)
class _SlotHealth:
    first_audio_s: float | None = None  # EWMA
    observed_at: float | None = None
    failed_at: float | None = None
    failure: str | None = None


class TtsModes:
    """Holds the ``fast`` and optional ``hq`` TTS engines and picks one per reply."""

    def __init__(
        self,
        settings: TtsSettings,
        fast: TextToSpeech,
        hq: TextToSpeech | None = None,
        *,
        hq_error: AvatarError | None = None,
        clock: Callable[[], float] = time.monotonic,
        hq_gate: Callable[[], tuple[bool, str]] | None = None,
    ) -> None:
        self.settings = settings
        self.fast = fast
        self.hq = hq
        self._hq_error = hq_error
        self._clock = clock
        self._hq_gate = hq_gate  # e.g. GPU admission: "too loaded for hq now"
        self._health: dict[str, _SlotHealth] = {"fast": _SlotHealth(), "hq": _SlotHealth()}

    @classmethod
    def from_settings(cls, settings: TtsSettings, models: ModelStore) -> TtsModes:
        """Build both slots; a broken hq slot is recorded (see ``status``), a broken fast raises."""
        fast = create_engine("tts", settings.fast.engine, settings.fast, models)
        hq, error = None, None
        if settings.hq is not None:
            try:
                hq = create_engine("tts", settings.hq.engine, settings.hq, models)
            except AvatarError as exc:
                error = exc
        return cls(settings, fast, hq, hq_error=error)

    @property
    def budget_s(self) -> float:
        return self.settings.hq_latency_budget_ms / 1000

    def observe_first_audio(self, mode: Literal["fast", "hq"], seconds: float) -> None:
        """Record a reply's time to first audio on ``mode`` (smoothed)."""
        health = self._health[mode]
        prev = health.first_audio_s
        health.first_audio_s = (
            seconds if prev is None else EWMA_ALPHA * seconds + (1 - EWMA_ALPHA) * prev
        )
        health.observed_at = self._clock()
        health.failed_at, health.failure = None, None

    def observe_failure(self, mode: Literal["fast", "hq"], error: BaseException) -> None:
        """Record that ``mode`` failed; auto avoids hq for ``FAILURE_COOLDOWN_S`` after it."""
        health = self._health[mode]
        health.failed_at, health.failure = self._clock(), str(error)

    def select(self, mode: TtsMode) -> TtsSelection:
        if mode == "fast":
            return TtsSelection(self.fast, "fast", "fast requested")
        if mode == "hq":
            return TtsSelection(self._require_hq(), "hq", "hq requested")
        return self._auto()

    def _require_hq(self) -> TextToSpeech:
        if self._hq_error is not None:
            raise EngineUnavailable(
                f"hq TTS cannot be used: {self._hq_error.message}",
                hint=self._hq_error.hint or "fix the AVATAR_TTS__HQ__* settings",
            )
        if self.hq is None:
            raise EngineUnavailable(
                "hq TTS is not configured",
                hint="set AVATAR_TTS__HQ__ENGINE=… (e.g. openai, with AVATAR_TTS__HQ__BASE_URL),"
                " or use the fast mode",
            )
        return self.hq

    def _auto(self) -> TtsSelection:
        why_not = self._hq_unusable_reason()
        if why_not is not None:
            return TtsSelection(self.fast, "fast", f"auto: {why_not}")
        assert self.hq is not None
        return TtsSelection(self.hq, "hq", f"auto: {self._hq_ok_reason()}")

    def _hq_unusable_reason(self) -> str | None:
        if self.hq is None:
            return "hq unavailable" if self._hq_error else "hq not configured"
        if self._hq_gate is not None:
            allowed, why = self._hq_gate()
            if not allowed:
                return why
        health, now = self._health["hq"], self._clock()
        if health.failed_at is not None and now - health.failed_at < FAILURE_COOLDOWN_S:
            return f"hq failed {now - health.failed_at:.0f} s ago ({health.failure})"
        latency = health.first_audio_s
        if latency is None or latency <= self.budget_s:
            return None
        if health.observed_at is not None and now - health.observed_at >= PROBE_INTERVAL_S:
            return None  # re-probe: the estimate is stale
        return f"hq first audio {latency:.2f} s is over the {self.budget_s:.2f} s budget"

    def _hq_ok_reason(self) -> str:
        latency = self._health["hq"].first_audio_s
        if latency is None:
            return "hq configured, latency not yet measured"
        if latency > self.budget_s:
            return "re-probing hq (its latency estimate is stale)"
        return f"hq first audio {latency:.2f} s is within the {self.budget_s:.2f} s budget"

    def status(self) -> dict[str, dict[str, Any]]:
        """Per slot: configured, engine, available, reason, first_audio_ms."""
        hq_cfg = self.settings.hq
        return {
            "fast": self._slot_status(True, self.settings.fast.engine, "fast", None),
            "hq": self._slot_status(
                hq_cfg is not None, hq_cfg.engine if hq_cfg else None, "hq", self._hq_blocker()
            ),
        }

    def _hq_blocker(self) -> str | None:
        if self._hq_error is not None:
            return str(self._hq_error)
        if self.hq is None:
            return "not configured: set AVATAR_TTS__HQ__ENGINE"
        return None

    def _slot_status(
        self, configured: bool, engine: str | None, mode: str, blocker: str | None
    ) -> dict[str, Any]:
        health = self._health[mode]
        recent_failure = (
            health.failed_at is not None and self._clock() - health.failed_at < FAILURE_COOLDOWN_S
        )
        reason = blocker or (f"failed recently: {health.failure}" if recent_failure else "ready")
        latency = health.first_audio_s
        return {
            "configured": configured,
            "engine": engine,
            "available": blocker is None and not recent_failure,
            "reason": reason,
            "first_audio_ms": None if latency is None else round(latency * 1000, 1),
        }
