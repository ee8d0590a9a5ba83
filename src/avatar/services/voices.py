"""Voice profiles as voices: the reference a cloning engine needs, and an honest engine choice.

The embedded TTS (Piper, espeak-ng) has packaged voices only. A profile is *cloned* only when
the configured ``hq`` engine declares ``capabilities.cloning``; otherwise the closest packaged
voice speaks, and callers are told which (``Spoken.voice`` and ``Spoken.cloned``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from avatar.audio.decode import decode_audio
from avatar.audio.pcm import PcmAudio
from avatar.engines.base import TextToSpeech, VoiceRef
from avatar.engines.hub import EngineHub
from avatar.engines.tts.language import detect_text_language, speech_language
from avatar.services.speech import say
from avatar.storage import AudioStore, Database, VoiceProfiles, embedding_from_bytes

CLONING_READY = "cloning_ready"
PACKAGED_VOICE = "packaged_voice"


def cloning_engine(hub: EngineHub) -> TextToSpeech | None:
    """The configured hq TTS engine if it can clone a voice from reference audio, else None."""
    if hub.settings.tts.hq is None:
        return None
    hq = hub.tts_modes.hq
    return hq if hq is not None and hq.capabilities.cloning else None


def engine_status(hub: EngineHub) -> str:
    """``cloning_ready`` when a cloning engine is configured, else ``packaged_voice``."""
    return CLONING_READY if cloning_engine(hub) is not None else PACKAGED_VOICE


class ProfileVoices:
    """Resolves a voice-profile id to a :class:`VoiceRef` (the pipeline's ``VoiceResolver``).

    Register as ``state.services["voices"] = ProfileVoices(state.db, state.audio)``.
    """

    def __init__(self, db: Database, audio: AudioStore) -> None:
        self.db = db
        self.audio = audio

    async def voice(self, profile_id: str) -> VoiceRef:
        """The profile's reference audio, reference text and speaker embedding.

        Raises :class:`avatar.storage.NotFound` for an unknown id or a missing audio file.
        """
        async with self.db.read() as session:
            row = await VoiceProfiles(session).get(profile_id)
            rel, text, embedding = row.audio, row.reference_text, row.embedding
            name = row.name
        audio = await asyncio.to_thread(self._load, rel)
        return VoiceRef(
            reference_audio=audio,
            reference_text=text,
            conditioning={
                "embedding": embedding_from_bytes(embedding) if embedding else None,
                "profile_id": profile_id,
                "profile_name": name,
            },
        )

    def _load(self, rel: str) -> PcmAudio:
        data = self.audio.open_path(rel).read_bytes()
        return decode_audio(data, target_rate=None)


@dataclass(frozen=True, slots=True)
class Spoken:
    """Synthesized audio and the truth about who spoke it."""

    audio: PcmAudio
    voice: str  # the engine's own description, e.g. "piper:joe"
    cloned: bool
    language: str


async def speak_as(
    hub: EngineHub,
    voices: ProfileVoices,
    profile_id: str,
    text: str,
    *,
    language: str | None = None,
) -> Spoken:
    """Say ``text`` in the profile's voice: cloned when an engine can, else a packaged voice.

    The reference audio is loaded only for a cloning engine; callers check the profile exists.
    """
    lang = speech_language(language or detect_text_language(text), text)
    engine = cloning_engine(hub)
    if engine is not None:
        ref = await voices.voice(profile_id)
        audio = await say(hub, text, language=lang, quality="hq", voice=ref)
        return Spoken(audio, engine.describe_voice(lang, ref), True, lang)
    fast = hub.tts("fast")
    audio = await say(hub, text, language=lang, quality="fast")
    return Spoken(audio, fast.describe_voice(lang, None), False, lang)
