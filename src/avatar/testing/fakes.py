"""Scripted engines for injecting timing and faults (barge-in timelines, server overhead).

They implement the same Protocols as the real engines; tests and `avatar bench` share them.
Each waits on its ``clock`` (real time by default; the turn harness gives them its
:class:`avatar.testing.clock.FakeClock`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import (
    ChatMessage,
    GenerationOptions,
    LlmCapabilities,
    SttCapabilities,
    Transcript,
    TtsCapabilities,
    TurnCapabilities,
    VadCapabilities,
    VoiceRef,
)
from avatar.errors import EngineFailed
from avatar.pipeline.clock import MONOTONIC, Clock
from avatar.pipeline.turn import Turn


class _Loaded:
    name = "fake"
    loaded = True
    clock: Clock = MONOTONIC

    def load(self) -> None: ...

    def unload(self) -> None: ...


class ScriptedChat(_Loaded):
    """Streams ``reply`` word by word, one word every ``interval_s``; may fail after k words.
    ``prompts`` keeps the messages of every call."""

    capabilities = LlmCapabilities(streaming=True)

    def __init__(
        self,
        reply: str,
        *,
        interval_s: float = 0.05,
        first_token_s: float = 0.0,
        fail_after: int | None = None,
    ) -> None:
        self.reply, self.interval_s, self.first_token_s = reply, interval_s, first_token_s
        self.fail_after = fail_after
        self.produced = 0  # words yielded, across calls (lets tests see cancellation)
        self.prompts: list[list[ChatMessage]] = []

    async def stream_chat(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[str]:
        self.prompts.append(list(messages))
        await self.clock.sleep(self.first_token_s)
        for i, word in enumerate(self.reply.split(" ")):
            if self.fail_after is not None and i >= self.fail_after:
                raise EngineFailed("scripted failure", code="engine_stream_broken")
            self.produced += 1
            yield word if i == 0 else " " + word
            await self.clock.sleep(self.interval_s)

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)


class ScriptedTurnChat(ScriptedChat):
    """A :class:`ScriptedChat` that also gives the text end-of-turn probability: one value per
    call in turn (the last repeats); ``asked`` keeps the user's words of every call,
    ``asked_with`` its messages, and ``read_ahead_of`` the conversations it was asked to read
    ahead."""

    def __init__(self, reply: str, end_of_turn: float | Sequence[float], **timing: float) -> None:
        super().__init__(reply, **timing)  # type: ignore[arg-type]
        self.script = [end_of_turn] if isinstance(end_of_turn, float) else list(end_of_turn)
        self.asked_with: list[list[ChatMessage]] = []
        self.read_ahead_of: list[list[ChatMessage]] = []

    @property
    def asked(self) -> list[str]:
        return [messages[-1].content for messages in self.asked_with]

    async def end_of_turn_probability(self, messages: Sequence[ChatMessage]) -> float | None:
        self.asked_with.append(list(messages))
        return self.script[min(len(self.asked_with), len(self.script)) - 1]

    async def read_ahead(self, messages: Sequence[ChatMessage]) -> int:
        self.read_ahead_of.append(list(messages))
        return 0


class ScriptedTurn(_Loaded):
    """An acoustic end-of-turn model: one P(complete) per call in turn (the last repeats), after
    ``delay_s``; ``heard`` keeps the audio of every call."""

    capabilities = TurnCapabilities(sample_rate=16_000, window_s=8.0)

    def __init__(self, probabilities: float | Sequence[float], *, delay_s: float = 0.0) -> None:
        self.script = [probabilities] if isinstance(probabilities, float) else list(probabilities)
        self.delay_s = delay_s
        self.heard: list[PcmAudio] = []

    async def completion_probability(self, audio: PcmAudio) -> float:
        self.heard.append(audio)
        await self.clock.sleep(self.delay_s)
        return self.script[min(len(self.heard), len(self.script)) - 1]


class ToneTts(_Loaded):
    """Speaks any text as a quiet tone, ``ms_per_word`` long per word, after ``delay_s``; each
    chunk starts with ``lead_s`` of digital silence, as neural voices' do."""

    def __init__(
        self,
        *,
        sample_rate: int = 16_000,
        ms_per_word: float = 300.0,
        delay_s: float = 0.0,
        lead_s: float = 0.0,
    ) -> None:
        self.capabilities = TtsCapabilities(sample_rate=sample_rate, languages=None)
        self.ms_per_word, self.delay_s, self.lead_s = ms_per_word, delay_s, lead_s

    async def synthesize_stream(
        self, text: str, *, language: str = "en", voice: VoiceRef | None = None
    ) -> AsyncIterator[PcmAudio]:
        await self.clock.sleep(self.delay_s)
        words = max(1, len(text.split()))
        n = int(self.capabilities.sample_rate * self.ms_per_word * words / 1000)
        t = np.arange(n, dtype=np.float32) / self.capabilities.sample_rate
        lead = np.zeros(int(self.capabilities.sample_rate * self.lead_s), dtype=np.float32)
        tone = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        yield PcmAudio(np.concatenate([lead, tone]), self.capabilities.sample_rate)

    def describe_voice(self, language: str, voice: VoiceRef | None) -> str:
        return "fake:tone"


class ScriptedStt(_Loaded):
    """Returns ``text`` for any audio after ``delay_s``; a list gives one text per call in turn
    (the last repeats). ``heard`` keeps the audio of every call, ``likely`` the likely language
    it was told."""

    capabilities = SttCapabilities(streaming=False, languages=None)

    def __init__(
        self, text: str | Sequence[str], *, language: str = "en", delay_s: float = 0.0
    ) -> None:
        self.texts = [text] if isinstance(text, str) else list(text)
        self.language, self.delay_s = language, delay_s
        self.heard: list[PcmAudio] = []
        self.likely: list[str | None] = []

    async def transcribe(
        self, audio: PcmAudio, *, language: str | None = None, likely_language: str | None = None
    ) -> Transcript:
        self.heard.append(audio)
        self.likely.append(likely_language)
        text = self.texts[min(len(self.heard), len(self.texts)) - 1]
        await self.clock.sleep(self.delay_s)
        return Transcript(text, language or self.language, audio.duration_s)


class ScriptedVad(_Loaded):
    """A VAD whose script is the audio itself: a frame's peak level is its speech probability.

    The turn harness speaks with frames at level 0.9 and is silent with zeros, so the same
    audio gives the same probabilities to every VAD that reads it (push-to-talk re-checks).
    With ``hold_frames``, it goes on hearing a voiced frame's probability for that many frames
    after the sound stopped, as Silero does (2-3 frames, docs/BENCHMARKS.md, round 12).
    """

    capabilities = VadCapabilities(sample_rate=16_000, frame_samples=512)

    def __init__(self, hold_frames: int = 0) -> None:
        self.hold_frames = hold_frames
        self.reset()

    def probability(self, frame: np.ndarray) -> float:
        heard = float(min(1.0, np.max(np.abs(frame)))) if len(frame) else 0.0
        if heard >= 0.5:
            self._last, self._held = heard, self.hold_frames
        elif self._held:
            self._held -= 1
            return self._last
        return heard

    def reset(self) -> None:
        self._last, self._held = 0.0, 0


@dataclass
class RecordedTurn:
    """What a :class:`MemoryRecorder` stored for one turn."""

    user_text: str
    assistant_text: str  # the whole reply, as services/recorder.py stores it
    heard_text: str | None
    interrupted: bool
    reply_audio_ms: float
    heard_ms: float | None = None


@dataclass
class MemoryRecorder:
    """A :class:`avatar.pipeline.session.TurnRecorder` that keeps turns in a list."""

    turns: list[RecordedTurn] = field(default_factory=list)

    async def record(
        self,
        session_id: str,
        turn: Turn,
        user_audio: PcmAudio | None,
        reply_audio: list[tuple[bytes, int]],
        interrupted: bool,
    ) -> int:
        heard = turn.heard_text() if interrupted else None
        audio_ms = sum(len(pcm) / 2 / rate * 1000 for pcm, rate in reply_audio)
        heard_ms = turn.played_ms if interrupted else None
        self.turns.append(
            RecordedTurn(turn.user_text, turn.reply_text, heard, interrupted, audio_ms, heard_ms)
        )
        return len(self.turns) - 1

    async def mark_interrupted(
        self, session_id: str, index: int, heard_text: str, heard_ms: float | None = None
    ) -> None:
        stored = self.turns[index]
        stored.interrupted, stored.heard_text, stored.heard_ms = True, heard_text, heard_ms
