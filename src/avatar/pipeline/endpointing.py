"""Endpointing: turn per-frame VAD probabilities into utterance start and end events.

The :class:`Endpointer` is pure and clock-free: stream time is the sum of the frame lengths it
was fed, in milliseconds from the start of the stream (or the last :meth:`Endpointer.reset`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from avatar.settings import VadSettings

# Frame lengths such as 1000 * 512 / 16000 are exact, but sums of other ones may not be.
_EPS = 1e-6
_HYSTERESIS = 0.15
# Silero's release comes 0-160 ms (median 64, 20 spoken questions) after the sound's end: its
# state still carries the last syllable. Counting the silence from the sound's end takes that
# lag off every turn; a quiet word ending longer than this stays counted as speech.
MAX_LAG_MS = 160.0


class EndpointState(Enum):
    IDLE = "idle"
    MAYBE_SPEECH = "maybe_speech"
    SPEECH = "speech"
    TRAILING_SILENCE = "trailing_silence"


@dataclass(frozen=True, slots=True)
class EndpointerConfig:
    """Thresholds and durations (ms) of the endpointer; see :class:`Endpointer` for their use."""

    threshold: float = 0.5
    negative_threshold: float | None = None  # None: threshold - 0.15
    min_speech_ms: float = 250.0
    silence_hangover_ms: float = 500.0
    max_utterance_ms: float = 30_000.0
    # A short first word ("So", "Hi": one ~130 ms burst) is a blip under min_speech_ms, and the
    # speech that follows is confirmed only after it: keep a full second before the onset so the
    # utterance still starts with that word (Whisper pads to 30 s: the extra audio is free).
    pre_roll_ms: float = 1000.0
    # With frame levels fed: the sound ends at the last frame within this many dB of the
    # utterance's loudest, and the trailing silence counts from there (up to MAX_LAG_MS before
    # the VAD's release). 0: from the release. Noise within this range of the voice (a poor
    # signal-to-noise ratio) counts as sound, which falls back to the release.
    loud_within_db: float = 30.0

    def __post_init__(self) -> None:
        if not 0.0 < self.release_threshold <= self.threshold < 1.0:
            raise ValueError("need 0 < negative_threshold <= threshold < 1")
        if min(self.min_speech_ms, self.silence_hangover_ms, self.pre_roll_ms) < 0:
            raise ValueError("durations must not be negative")
        if self.loud_within_db < 0:
            raise ValueError("loud_within_db must not be negative")
        if self.max_utterance_ms <= 0:
            raise ValueError("max_utterance_ms must be positive")

    @property
    def release_threshold(self) -> float:
        if self.negative_threshold is not None:
            return self.negative_threshold
        return max(0.01, self.threshold - _HYSTERESIS)

    @classmethod
    def from_settings(cls, vad: VadSettings) -> EndpointerConfig:
        return cls(
            threshold=vad.threshold,
            min_speech_ms=vad.min_speech_ms,
            silence_hangover_ms=vad.silence_hangover_ms,
            max_utterance_ms=vad.max_utterance_ms,
            pre_roll_ms=vad.pre_roll_ms,
            loud_within_db=vad.loud_within_db,
        )


@dataclass(frozen=True, slots=True)
class SpeechStart:
    """Speech confirmed. Keep audio from ``offset_ms`` (onset minus pre-roll) on."""

    offset_ms: float
    onset_ms: float  # start of the first voiced frame
    detected_ms: float  # stream time when confirmed (onset + min_speech_ms)


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    """The utterance ended after ``end_ms`` (end of its last voiced frame)."""

    end_ms: float
    speech_ms: float  # end_ms - onset_ms
    detected_ms: float  # stream time when decided (end + hangover, or the forcing moment)
    lag_ms: float = 0.0  # the sound ended this long before end_ms (counted as silence)


@dataclass(frozen=True, slots=True)
class UtteranceTooLong(SpeechEnd):
    """A forced end: the utterance reached ``max_utterance_ms``."""


@dataclass(frozen=True, slots=True)
class SpeechDiscarded:
    """Voiced audio shorter than ``min_speech_ms`` (a blip); no turn was started."""

    onset_ms: float
    speech_ms: float


EndpointEvent = SpeechStart | SpeechEnd | SpeechDiscarded


class Endpointer:
    """Endpointing state machine fed one VAD frame at a time.

    States:

    - ``IDLE``: no speech. A frame at or above ``threshold`` moves to ``MAYBE_SPEECH``.
    - ``MAYBE_SPEECH``: voiced, not yet confirmed. Frames must stay at or above the release
      threshold (``threshold - 0.15``, hysteresis) for ``min_speech_ms`` of continuous voice;
      then :class:`SpeechStart` is emitted and the state is ``SPEECH``. A frame below the
      release threshold first emits :class:`SpeechDiscarded` and goes back to ``IDLE``, so a
      noise spike shorter than ``min_speech_ms`` never starts a turn.
    - ``SPEECH``: confirmed speech; a frame below the release threshold enters
      ``TRAILING_SILENCE``.
    - ``TRAILING_SILENCE``: a frame at or above ``threshold`` resumes ``SPEECH`` (the hangover
      bridges short pauses); ``silence_hangover_ms`` of silence emits :class:`SpeechEnd` and
      goes to ``IDLE``. When frames come with their level, the silence counts from the end of
      the last loud voiced frame (see ``loud_within_db``), not from the VAD's late release.

    In ``SPEECH`` and ``TRAILING_SILENCE``, reaching ``max_utterance_ms`` since the onset emits
    :class:`UtteranceTooLong` (a :class:`SpeechEnd`) and goes to ``IDLE``. Starts and ends
    always alternate.
    """

    def __init__(self, config: EndpointerConfig | None = None) -> None:
        self.config = config or EndpointerConfig()
        self.reset()

    def reset(self) -> None:
        """Back to ``IDLE`` at stream time 0 (the start of a new stream)."""
        self._state = EndpointState.IDLE
        self._now_ms = 0.0
        self._onset_ms = 0.0
        self._voiced_end_ms = 0.0
        self._silence_ms = 0.0
        self._previous_end_ms = 0.0
        self._level: float | None = None
        self._levels: deque[tuple[float, float]] = deque(maxlen=64)  # voiced (end_ms, dBFS)
        self._peak_dbfs = -float("inf")
        self._lag_ms = 0.0

    @property
    def state(self) -> EndpointState:
        return self._state

    @property
    def now_ms(self) -> float:
        """Stream time: the total length of the frames processed."""
        return self._now_ms

    @property
    def in_speech(self) -> bool:
        """True between a :class:`SpeechStart` and its end."""
        return self._state in (EndpointState.SPEECH, EndpointState.TRAILING_SILENCE)

    @property
    def onset_ms(self) -> float:
        """Stream time of the current utterance's first voiced frame (meaningless when idle)."""
        return self._onset_ms

    @property
    def speech_ms(self) -> float:
        """Voiced time of the current (maybe unconfirmed) utterance so far; 0 when idle."""
        if self._state is EndpointState.IDLE:
            return 0.0
        return self._voiced_end_ms - self._onset_ms

    @property
    def silence_ms(self) -> float:
        """Trailing silence of the utterance in progress so far; 0 while voiced or idle."""
        return self._silence_ms if self._state is EndpointState.TRAILING_SILENCE else 0.0

    @property
    def quiet_ms(self) -> float:
        """How long the sound has been over: the trailing silence (counted from the sound's
        end), or while the VAD still hears speech, the voiced frames since the last loud one
        (see ``loud_within_db``; Silero holds on 2-3 frames past a word's end). 0 while the
        sound goes on, when nobody speaks, or without frame levels."""
        if self._state is EndpointState.TRAILING_SILENCE:
            return self._silence_ms
        if self._state is EndpointState.SPEECH:
            return self._sound_lag_ms()
        return 0.0

    def process(
        self, probability: float, frame_ms: float, level_dbfs: float | None = None
    ) -> list[EndpointEvent]:
        """Feed one frame's speech probability (and its level, if known); return the events it
        caused (often none)."""
        if frame_ms <= 0:
            raise ValueError("frame_ms must be positive")
        start = self._now_ms
        self._now_ms += frame_ms
        self._level = level_dbfs
        if self._state is EndpointState.IDLE:
            return self._idle(probability, start)
        if self._state is EndpointState.MAYBE_SPEECH:
            return self._maybe_speech(probability)
        return self._in_speech(probability, frame_ms)

    def force_end(self) -> list[EndpointEvent]:
        """End the utterance now (push-to-talk release).

        Returns a :class:`SpeechEnd` in speech, a :class:`SpeechDiscarded` while speech is
        unconfirmed, and nothing when idle.
        """
        if self._state is EndpointState.MAYBE_SPEECH:
            return [self._discard()]
        if self.in_speech:
            return [self._end(SpeechEnd)]
        return []

    def _idle(self, probability: float, start: float) -> list[EndpointEvent]:
        if probability < self.config.threshold:
            return []
        self._state = EndpointState.MAYBE_SPEECH
        self._onset_ms = start
        self._levels.clear()
        self._peak_dbfs = -float("inf")
        self._voiced()
        return self._confirm_if_long_enough()

    def _maybe_speech(self, probability: float) -> list[EndpointEvent]:
        if probability >= self.config.release_threshold:
            self._voiced()
            return self._confirm_if_long_enough()
        return [self._discard()]

    def _confirm_if_long_enough(self) -> list[EndpointEvent]:
        if self.speech_ms + _EPS < self.config.min_speech_ms:
            return []
        self._state = EndpointState.SPEECH
        self._silence_ms = 0.0
        offset = max(self._onset_ms - self.config.pre_roll_ms, self._previous_end_ms)
        event = SpeechStart(offset_ms=offset, onset_ms=self._onset_ms, detected_ms=self._now_ms)
        return [event, *self._check_too_long()]

    def _in_speech(self, probability: float, frame_ms: float) -> list[EndpointEvent]:
        cfg = self.config
        if self._state is EndpointState.SPEECH and probability >= cfg.release_threshold:
            self._voiced()
        elif probability >= cfg.threshold:
            self._state = EndpointState.SPEECH
            self._voiced()
        else:
            if self._state is EndpointState.SPEECH:  # the pause begins: since the sound's end
                self._lag_ms = self._sound_lag_ms()
                self._silence_ms = self._lag_ms
            self._state = EndpointState.TRAILING_SILENCE
            self._silence_ms += frame_ms
            if self._silence_ms + _EPS >= cfg.silence_hangover_ms:
                return [self._end(SpeechEnd)]
        if self._state is EndpointState.SPEECH:
            self._silence_ms = 0.0
        return self._check_too_long()

    def _voiced(self) -> None:
        """The frame just fed is voiced: the utterance lasts to its end; note its level."""
        self._voiced_end_ms = self._now_ms
        if self._level is not None:
            self._levels.append((self._now_ms, self._level))
            self._peak_dbfs = max(self._peak_dbfs, self._level)

    def _sound_lag_ms(self) -> float:
        """How long before the VAD's release the sound ended: from the end of the last voiced
        frame within ``loud_within_db`` of the loudest to the end of the last voiced one."""
        if not self.config.loud_within_db or not self._levels:
            return 0.0
        floor = self._peak_dbfs - self.config.loud_within_db
        for end_ms, level in reversed(self._levels):
            if level >= floor or self._voiced_end_ms - end_ms >= MAX_LAG_MS:
                return min(self._voiced_end_ms - end_ms, MAX_LAG_MS)
        return min(self._voiced_end_ms - self._levels[0][0], MAX_LAG_MS)

    def _check_too_long(self) -> list[EndpointEvent]:
        if self._now_ms - self._onset_ms + _EPS < self.config.max_utterance_ms:
            return []
        if self._state is EndpointState.SPEECH:
            self._voiced_end_ms = self._now_ms
        return [self._end(UtteranceTooLong)]

    def _end(self, kind: type[SpeechEnd]) -> SpeechEnd:
        in_pause = self._state is EndpointState.TRAILING_SILENCE
        event = kind(
            end_ms=self._voiced_end_ms,
            speech_ms=self._voiced_end_ms - self._onset_ms,
            detected_ms=self._now_ms,
            lag_ms=self._lag_ms if in_pause else 0.0,
        )
        self._previous_end_ms = self._voiced_end_ms
        self._state = EndpointState.IDLE
        return event

    def _discard(self) -> SpeechDiscarded:
        event = SpeechDiscarded(onset_ms=self._onset_ms, speech_ms=self.speech_ms)
        self._state = EndpointState.IDLE
        return event
