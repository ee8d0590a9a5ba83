"""The user's words from an utterance: STT (watched for engine health), then the phantom filter."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass

from avatar.audio.pcm import PcmAudio
from avatar.engines.hub import EngineHub
from avatar.pipeline.clock import Clock
from avatar.pipeline.hallucinations import is_hallucination, unheard_speech


@dataclass(frozen=True, slots=True)
class Heard:
    """What the user said, in which language."""

    text: str
    language: str | None


async def hear(
    hub: EngineHub,
    audio: PcmAudio,
    language: str | None,
    metrics: MutableMapping[str, float | str | None],
    clock: Clock,
    likely_language: str | None = None,
) -> Heard | None:
    """The words of ``audio`` (``stt_ms`` into ``metrics``); None for noise or silence."""
    start = clock.now()
    with hub.health.watch("stt"):
        result = await hub.stt.transcribe(audio, language=language, likely_language=likely_language)
    hub.health.worked("stt")
    metrics["stt_ms"] = round((clock.now() - start) * 1000, 1)
    text = result.text.strip()
    speech = metrics.get("user_speech_ms")
    speech_ms = float(speech) if isinstance(speech, float | int) else None
    if not text or is_hallucination(
        text, no_speech_probability=result.no_speech_probability, speech_ms=speech_ms
    ):
        # long speech heard as nothing is an error the user sees, never a turn lost in silence
        unheard_speech(speech_ms or audio.duration_s * 1000, text)
        return None  # no phantom turn
    return Heard(text, result.language)
