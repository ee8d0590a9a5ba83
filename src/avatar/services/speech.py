"""One-shot speech use cases shared by the CLI and the REST API: transcribe, ask, say, talk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from avatar.audio.decode import AudioLimits, decode_audio
from avatar.audio.pcm import PcmAudio
from avatar.engines.base import (
    ChatMessage,
    GenerationOptions,
    TextToSpeech,
    Transcript,
    VoiceRef,
)
from avatar.engines.hub import EngineHub
from avatar.engines.tts.language import detect_text_language
from avatar.errors import EmptyAudio
from avatar.pipeline.prompts import localized_prompt


async def transcribe_bytes(
    hub: EngineHub,
    data: bytes,
    *,
    language: str | None = None,
    limits: AudioLimits | None = None,
) -> Transcript:
    """Decode any supported audio file and transcribe it."""
    audio = await asyncio.to_thread(
        decode_audio, data, limits=limits or AudioLimits(), target_rate=16_000
    )
    return await hub.stt.transcribe(audio, language=language)


def ask(
    hub: EngineHub,
    question: str,
    *,
    history: list[ChatMessage] | None = None,
    system_prompt: str | None = None,
) -> AsyncIterator[str]:
    """Stream the LLM's answer to ``question`` as text deltas."""
    cfg = hub.settings.llm
    language = detect_text_language(question)
    messages = [
        # the prompt in the question's language: the small default model follows that
        ChatMessage("system", localized_prompt(system_prompt or cfg.system_prompt, language)),
        *(history or []),
        ChatMessage("user", question),
    ]
    options = GenerationOptions(max_tokens=cfg.max_tokens, temperature=cfg.temperature)
    return hub.llm.stream_chat(messages, options)


async def say(
    hub: EngineHub,
    text: str,
    *,
    language: str | None = None,
    quality: str = "fast",
    voice: VoiceRef | None = None,
) -> PcmAudio:
    """Synthesize ``text`` whole (all chunks joined)."""
    lang = language or detect_text_language(text)
    return await synthesize_whole(hub.tts(quality), text, language=lang, voice=voice)


async def synthesize_whole(
    engine: TextToSpeech, text: str, *, language: str, voice: VoiceRef | None = None
) -> PcmAudio:
    """All of ``engine``'s chunks for ``text``, joined."""
    out: PcmAudio | None = None
    async for chunk in engine.synthesize_stream(text, language=language, voice=voice):
        out = chunk if out is None else out.concat(chunk)
    if out is None:
        raise EmptyAudio("the TTS engine produced no audio", hint="check the text is speakable")
    return out


@dataclass(frozen=True, slots=True)
class TalkResult:
    transcript: Transcript
    reply: str
    audio: PcmAudio


async def talk(hub: EngineHub, data: bytes, *, language: str | None = None) -> TalkResult:
    """One whole voice turn offline: speech in, spoken answer out (STT, LLM, TTS)."""
    transcript = await transcribe_bytes(hub, data, language=language)
    if not transcript.text.strip():
        raise EmptyAudio("no speech was recognised in the audio", hint="record a clearer question")
    reply = "".join([d async for d in ask(hub, transcript.text)]).strip()
    audio = await say(hub, reply, language=transcript.language or detect_text_language(reply))
    return TalkResult(transcript, reply, audio)
