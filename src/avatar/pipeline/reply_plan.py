"""What a reply needs, fixed when it starts: engines, messages, options, language and voice."""

from __future__ import annotations

from typing import TYPE_CHECKING

from avatar.engines.base import ChatMessage, GenerationOptions
from avatar.engines.cpu_turns import CpuTurns
from avatar.engines.hub import EngineHub
from avatar.pipeline.clock import Clock
from avatar.pipeline.config import SessionConfig
from avatar.pipeline.responder import ReplyPlan
from avatar.pipeline.turn import Turn

if TYPE_CHECKING:
    from avatar.pipeline.ports import VoiceResolver


async def plan_reply(
    hub: EngineHub,
    config: SessionConfig,
    voices: VoiceResolver | None,
    turn: Turn,
    messages: list[ChatMessage],
    clock: Clock,
) -> ReplyPlan:
    """The :class:`ReplyPlan` of ``turn`` (sets the TTS mode it uses)."""
    selection = hub.tts_modes.select(config.tts_mode)  # type: ignore[arg-type]
    turn.tts_mode = selection.mode_used
    voice = None
    if config.voice_profile_id and voices:
        voice = await voices.voice(config.voice_profile_id)
    llm = hub.settings.llm
    return ReplyPlan(
        hub.llm,
        selection.engine,
        selection.mode_used,
        messages,
        GenerationOptions(
            max_tokens=llm.max_tokens, temperature=llm.temperature, cpu_turns=CpuTurns()
        ),
        turn.language or "en",
        voice,
        turn.t0,
        sequential=hub.settings.pipeline == "sequential",
        health=hub.health,
        clock=clock,
    )
