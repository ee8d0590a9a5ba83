"""Scripted engines for injecting timing and faults (barge-in timelines, server overhead).

They implement the same Protocols as the real engines; tests and `avatar bench` share them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import numpy as np

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import (
    ChatMessage,
    GenerationOptions,
    LlmCapabilities,
    SttCapabilities,
    Transcript,
    TtsCapabilities,
    VoiceRef,
)
from avatar.errors import EngineFailed


class _Loaded:
    name = "fake"
    loaded = True

    def load(self) -> None: ...

    def unload(self) -> None: ...


class ScriptedChat(_Loaded):
    """Streams ``reply`` word by word, one word every ``interval_s``; may fail after k words."""

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

    async def stream_chat(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[str]:
        await asyncio.sleep(self.first_token_s)
        for i, word in enumerate(self.reply.split(" ")):
            if self.fail_after is not None and i >= self.fail_after:
                raise EngineFailed("scripted failure", code="engine_stream_broken")
            self.produced += 1
            yield word if i == 0 else " " + word
            await asyncio.sleep(self.interval_s)

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)


class ToneTts(_Loaded):
    """Speaks any text as a quiet tone, ``ms_per_word`` long per word, after ``delay_s``."""

    def __init__(
        self, *, sample_rate: int = 16_000, ms_per_word: float = 300.0, delay_s: float = 0.0
    ) -> None:
        self.capabilities = TtsCapabilities(sample_rate=sample_rate, languages=None)
        self.ms_per_word, self.delay_s = ms_per_word, delay_s

    async def synthesize_stream(
        self, text: str, *, language: str = "en", voice: VoiceRef | None = None
    ) -> AsyncIterator[PcmAudio]:
        await asyncio.sleep(self.delay_s)
        words = max(1, len(text.split()))
        n = int(self.capabilities.sample_rate * self.ms_per_word * words / 1000)
        t = np.arange(n, dtype=np.float32) / self.capabilities.sample_rate
        yield PcmAudio(
            (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), self.capabilities.sample_rate
        )

    def describe_voice(self, language: str, voice: VoiceRef | None) -> str:
        return "fake:tone"


class ScriptedStt(_Loaded):
    """Returns ``text`` for any audio after ``delay_s``."""

    capabilities = SttCapabilities(streaming=False, languages=None)

    def __init__(self, text: str, *, language: str = "en", delay_s: float = 0.0) -> None:
        self.text, self.language, self.delay_s = text, language, delay_s

    async def transcribe(self, audio: PcmAudio, *, language: str | None = None) -> Transcript:
        await asyncio.sleep(self.delay_s)
        return Transcript(self.text, language or self.language, audio.duration_s)
