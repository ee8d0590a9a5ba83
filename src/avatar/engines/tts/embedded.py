"""The default ``fast`` TTS: Piper for English, Kokoro for Mandarin, espeak-ng for the rest.

Piper and espeak-ng speak at 22,050 Hz, Kokoro at 24 kHz; audio of another rate than Piper's is
resampled so the engine has one output rate (Piper's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import soxr

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import TextToSpeech, TtsCapabilities, VoiceRef
from avatar.engines.executor import ThreadedEngine
from avatar.engines.tts.espeak import EspeakTts
from avatar.engines.tts.kokoro import DEFAULT_MODEL as KOKORO_MODEL
from avatar.engines.tts.kokoro import KokoroTts
from avatar.engines.tts.language import normalize_language, primary_language, speech_language
from avatar.engines.tts.piper import PiperTts
from avatar.models.store import ModelStore
from avatar.settings import TtsSlotSettings

_CANTONESE = frozenset({"zh-hk", "zh-mo", "zh-yue"})  # espeak-ng speaks these as yue


class EmbeddedTts:
    """Routes by reply language: English -> Piper (neural), Mandarin -> Kokoro (neural, when
    given), others -> espeak-ng (formant).

    ``language`` 'auto' (or '') picks by the text's script; text that is mostly CJK is spoken
    by espeak-ng even when the language says English. Voice profiles are not cloned: these
    engines only have their packaged voices, and ``describe_voice`` says so.
    """

    name = "embedded"

    def __init__(self, piper: PiperTts, espeak: EspeakTts, kokoro: KokoroTts | None = None) -> None:
        self.piper = piper
        self.espeak = espeak
        self.kokoro = kokoro
        piper_langs = piper.capabilities.languages or frozenset()
        self._piper_langs = piper_langs
        self.capabilities = TtsCapabilities(
            sample_rate=piper.capabilities.sample_rate,
            languages=(espeak.capabilities.languages or frozenset()) | piper_langs,
            streaming=True,
        )

    @classmethod
    def from_settings(cls, cfg: TtsSlotSettings, models: ModelStore) -> EmbeddedTts:
        piper, espeak = PiperTts.from_settings(cfg, models), EspeakTts.from_settings(cfg, models)
        return cls(piper, espeak, KokoroTts(models.path(KOKORO_MODEL)))

    @property
    def _engines(self) -> list[ThreadedEngine]:
        return [e for e in (self.espeak, self.piper, self.kokoro) if e is not None]

    @property
    def loaded(self) -> bool:
        return all(e.loaded for e in self._engines)

    def load(self) -> None:
        for engine in self._engines:
            engine.load()

    def unload(self) -> None:
        for engine in self._engines:
            engine.unload()

    def shutdown(self) -> None:
        for engine in self._engines:
            engine.shutdown()

    def engine_for(self, language: str) -> TextToSpeech:
        """The engine that speaks ``language`` (a language tag, not 'auto')."""
        language = normalize_language(language)
        primary = primary_language(language)
        if primary in self._piper_langs:
            return self.piper
        if self.kokoro is not None and primary == "zh" and language not in _CANTONESE:
            return self.kokoro
        return self.espeak

    def describe_voice(self, language: str, voice: VoiceRef | None) -> str:
        return self.engine_for(language).describe_voice(language, voice)

    async def synthesize_stream(
        self, text: str, *, language: str = "en", voice: VoiceRef | None = None
    ) -> AsyncIterator[PcmAudio]:
        lang = speech_language(language, text)
        engine = self.engine_for(lang)
        rate = self.capabilities.sample_rate
        inner = engine.synthesize_stream(text, language=lang, voice=voice)
        try:
            async for chunk in inner:
                yield chunk if chunk.sample_rate == rate else _resample(chunk, rate)
        finally:  # closing this stream closes the inner one now, which stops its worker
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()


def _resample(audio: PcmAudio, rate: int) -> PcmAudio:
    samples = soxr.resample(audio.samples, audio.sample_rate, rate)
    return PcmAudio(np.asarray(samples, dtype=np.float32), rate)
