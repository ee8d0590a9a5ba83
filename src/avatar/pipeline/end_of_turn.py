"""End of turn as a decision: has the user finished speaking, and which rule says so?

Pure and clock-free: the session measures durations (silence so far, speech so far, time since
the client last sent audio) and asks the end-of-turn models; :meth:`EndOfTurnPolicy.decide` only
combines what it is given, so every rule is testable without audio, models or clocks.

The rules, first match wins:

1. ``push_to_talk``: the client released the talk button.
2. ``starvation``: a hands-free client stopped sending audio after speech.
3. ``max_length``: the utterance reached the longest allowed.
4. ``fallback_silence``: silence long enough to end any turn, whatever the models think.
5. ``model_complete``: after a short silence, the fused end-of-turn probability is high enough.

Otherwise keep listening: a mid-sentence pause ("What is the capital ... of Japan?") waits up to
the fallback silence instead of ending the turn at the first short silence.

The fused probability is a weighted mean of the acoustic one (smart-turn: does it *sound*
finished?) and the text one (the chat model: P(end-of-turn token) after the words so far). The
text signal is sharp on unfinished phrases but depends on the transcript, the acoustic one is
mushier but needs no words; either may be missing (None), and then the other decides alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from avatar.settings import TurnSettings, VadSettings

EndpointReason = Literal[
    "push_to_talk", "starvation", "max_length", "fallback_silence", "model_complete"
]


@dataclass(frozen=True, slots=True)
class TurnEvidence:
    """What the session knows when it asks: durations in ms, probabilities in 0..1 or None."""

    silence_ms: float
    speech_ms: float = 0.0
    since_audio_ms: float = 0.0  # since the client last sent audio
    acoustic: float | None = None  # smart-turn P(complete); None: not asked or unavailable
    text: float | None = None  # chat model P(end of turn); None: not asked or unavailable
    push_to_talk_released: bool = False


@dataclass(frozen=True, slots=True)
class TurnDecision:
    """``end`` with the rule that decided, or keep listening (``reason`` None)."""

    end: bool
    reason: EndpointReason | None = None
    probability: float | None = None  # the fused probability, when the models were asked

    @property
    def endpoint_reason(self) -> str | None:
        """The value for ``turn_end`` metrics."""
        return self.reason


@dataclass(frozen=True, slots=True)
class EndOfTurnPolicy:
    """Thresholds and durations of the end-of-turn decision (see the module docstring)."""

    min_silence_ms: float = 300.0
    fallback_silence_ms: float = 2000.0
    max_utterance_ms: float = 30_000.0
    starvation_ms: float = 1000.0
    complete_threshold: float = 0.25  # the settings' defaults (see TurnSettings)
    acoustic_weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.acoustic_weight <= 1.0:
            raise ValueError("acoustic_weight must be within 0..1")
        if not 0.0 < self.complete_threshold < 1.0:
            raise ValueError("complete_threshold must be within 0..1 (exclusive)")
        if min(self.min_silence_ms, self.starvation_ms) < 0:
            raise ValueError("durations must not be negative")
        if self.fallback_silence_ms < self.min_silence_ms:
            raise ValueError("fallback_silence_ms must not be shorter than min_silence_ms")

    @classmethod
    def from_settings(cls, turn: TurnSettings, vad: VadSettings) -> EndOfTurnPolicy:
        return cls(
            min_silence_ms=turn.min_silence_ms,
            fallback_silence_ms=turn.fallback_silence_ms,
            max_utterance_ms=vad.max_utterance_ms,
            starvation_ms=turn.starvation_ms,
            complete_threshold=turn.complete_threshold,
            acoustic_weight=turn.acoustic_weight,
        )

    def ready_to_ask(self, silence_ms: float) -> bool:
        """Whether the silence is long enough to ask the end-of-turn models."""
        return silence_ms >= self.min_silence_ms

    def fuse(self, acoustic: float | None, text: float | None) -> float | None:
        """The weighted mean of the probabilities present; None when neither is."""
        if acoustic is None or text is None:
            return acoustic if text is None else text
        return self.acoustic_weight * acoustic + (1.0 - self.acoustic_weight) * text

    def decide(self, evidence: TurnEvidence) -> TurnDecision:
        """End now (and why), or keep listening."""
        forced = self._forced(evidence)
        if forced is not None:
            return TurnDecision(True, forced)
        if not self.ready_to_ask(evidence.silence_ms):
            return TurnDecision(False)
        fused = self.fuse(evidence.acoustic, evidence.text)
        if fused is not None and fused >= self.complete_threshold:
            return TurnDecision(True, "model_complete", fused)
        return TurnDecision(False, None, fused)

    def _forced(self, evidence: TurnEvidence) -> EndpointReason | None:
        """The rules that end a turn whatever the models say."""
        if evidence.push_to_talk_released:
            return "push_to_talk"
        if evidence.speech_ms > 0 and evidence.since_audio_ms >= self.starvation_ms:
            return "starvation"
        if evidence.speech_ms >= self.max_utterance_ms:
            return "max_length"
        if evidence.silence_ms >= self.fallback_silence_ms:
            return "fallback_silence"
        return None
