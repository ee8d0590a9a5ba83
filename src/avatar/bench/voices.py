"""The voices benchmarks ask their questions in, saying them the same way on every run.

Piper draws random noise for pitch and timing, so the server's own Piper voice says a question a
little differently each time, and two runs of a benchmark heard different clips: an A/B between
settings then also compared renderings ("Is water" heard as "Is what is what" in one run only;
docs/BENCHMARKS.md, round 12). Here Piper joe speaks without its noise (as the tests' voice does),
the same samples every time; beside it espeak-ng's formant voice, whose only variation is its
frication noise (the same length to a few samples).
"""

from __future__ import annotations

from avatar.audio.pcm import PcmAudio
from avatar.audio.resample import resample
from avatar.engines.base import TextToSpeech
from avatar.engines.hub import EngineHub, close_engine
from avatar.engines.registry import create_engine
from avatar.engines.tts.piper import DEFAULT_MODEL, PiperTts
from avatar.services.speech import synthesize_whole
from avatar.settings import TtsSlotSettings

VOICES = ("piper-joe", "espeak-en")
RATE = 16_000


class QuestionVoices:
    """Piper joe (neural, deterministic) and espeak-ng en-us (formant), loaded on first use."""

    def __init__(self, hub: EngineHub) -> None:
        self._hub = hub
        self._engines: dict[str, TextToSpeech] = {}

    def _engine(self, voice: str) -> TextToSpeech:
        if voice not in VOICES:
            raise ValueError(f"unknown question voice {voice!r}; use one of {VOICES}")
        if voice not in self._engines:
            models = self._hub.models
            self._engines[voice] = (
                PiperTts(models.path(DEFAULT_MODEL), deterministic=True)
                if voice == "piper-joe"
                else create_engine("tts", "espeak-ng", TtsSlotSettings(engine="espeak-ng"), models)
            )
        return self._engines[voice]

    async def speak(self, voice: str, text: str) -> PcmAudio:
        """``text`` said by ``voice``, whole, at 16 kHz."""
        return resample(await synthesize_whole(self._engine(voice), text, language="en"), RATE)

    def close(self) -> None:
        """Free the voices (the benchmark's server loads its own)."""
        for engine in self._engines.values():
            close_engine(engine)
        self._engines.clear()
