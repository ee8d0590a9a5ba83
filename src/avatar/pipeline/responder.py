"""The reply stage of a turn: LLM deltas → speakable chunks → TTS audio, all streamed.

Three tasks in a TaskGroup over a bounded channel: the LLM streams tokens (Chinese converted to
the user's script, sent to the client as ``ReplyText``) into a chunker; released chunks go to
TTS; audio is emitted as soon as each piece exists. Cancelling the group (barge-in) stops LLM
and TTS at their next token or chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from avatar.audio.edges import without_leading_silence
from avatar.engines.base import ChatMessage, ChatModel, GenerationOptions, TextToSpeech, VoiceRef
from avatar.engines.health import EngineHealth
from avatar.errors import EngineFailed
from avatar.pipeline.chunker import TextChunker
from avatar.pipeline.clock import MONOTONIC, Clock
from avatar.pipeline.events import Emit, ReplyText
from avatar.pipeline.turn import SpokenChunk, Turn
from avatar.text.script import ScriptStream

AudioSink = Callable[[Turn, bytes, int, str], Awaitable[None]]


@dataclass(slots=True)
class ReplyPlan:
    """Everything a reply needs, fixed when the turn starts."""

    llm: ChatModel
    tts: TextToSpeech
    tts_mode: str
    messages: list[ChatMessage]
    options: GenerationOptions
    language: str
    voice: VoiceRef | None
    t0: float  # clock time voice-to-voice is measured from (end of user speech)
    sequential: bool = False  # the original design: whole reply, then whole audio, then send
    health: EngineHealth = field(default_factory=EngineHealth)  # told what failed, what worked
    clock: Clock = MONOTONIC

    def speaking(self) -> AbstractContextManager[None]:
        """While TTS synthesizes: the chat model, on the same CPU, waits (engines/cpu_turns.py)."""
        turns = self.options.cpu_turns
        return turns.speaking() if turns is not None else nullcontext()

    def ms_since_t0(self) -> float:
        return round((self.clock.now() - self.t0) * 1000, 1)

    @property
    def tts_slot(self) -> str:
        return f"tts.{self.tts_mode}"


async def run_reply(turn: Turn, plan: ReplyPlan, emit_token: Emit, send_audio: AudioSink) -> None:
    """Stream the reply of ``turn``; fills ``turn.reply_text``, ``turn.chunks`` and metrics."""
    if plan.sequential:
        await _run_sequential(turn, plan, emit_token, send_audio)
        return
    chunks: asyncio.Queue[str | None] = asyncio.Queue(maxsize=8)
    async with asyncio.TaskGroup() as group:
        group.create_task(_generate(turn, plan, chunks, emit_token))
        group.create_task(_speak(turn, plan, chunks, send_audio))


async def _generate(
    turn: Turn, plan: ReplyPlan, out: asyncio.Queue[str | None], emit_token: Emit
) -> None:
    chunker = TextChunker()
    attempts = 0
    while True:
        script = ScriptStream(plan.language)  # Chinese in the user's script, phrase-safe
        try:
            with plan.health.watch("llm"):
                async for delta in plan.llm.stream_chat(plan.messages, plan.options):
                    if "llm_first_token_ms" not in turn.metrics:
                        turn.metrics["llm_first_token_ms"] = plan.ms_since_t0()
                        plan.health.worked("llm")
                    await _text(turn, plan, chunker, out, emit_token, script.push(delta))
            plan.health.worked("llm")
            await _text(turn, plan, chunker, out, emit_token, script.flush())
            break
        except EngineFailed as exc:
            # At most one retry, and only before anything reached the user.
            attempts += 1
            if not exc.retryable or attempts > 1 or turn.reply_text:
                raise
    for piece in chunker.flush():
        await _release(turn, plan, out, piece)
    await out.put(None)


async def _text(
    turn: Turn,
    plan: ReplyPlan,
    chunker: TextChunker,
    out: asyncio.Queue[str | None],
    emit_token: Emit,
    text: str,
) -> None:
    """Reply text (already in the user's script) to the client, the reply and the chunker."""
    if not text:
        return
    turn.reply_text += text
    await emit_token(ReplyText(text, turn.id))
    for piece in chunker.push(text):
        await _release(turn, plan, out, piece)


async def _release(turn: Turn, plan: ReplyPlan, out: asyncio.Queue[str | None], piece: str) -> None:
    if piece.strip():
        turn.metrics.setdefault("first_text_ms", plan.ms_since_t0())
        await out.put(piece)


async def _speak(
    turn: Turn, plan: ReplyPlan, chunks: asyncio.Queue[str | None], send_audio: AudioSink
) -> None:
    while (text := await chunks.get()) is not None:
        spoken = SpokenChunk(text, 0.0)
        turn.chunks.append(spoken)
        with plan.health.watch(plan.tts_slot), plan.speaking():
            async for audio in plan.tts.synthesize_stream(
                text, language=plan.language, voice=plan.voice
            ):
                if not len(audio.samples):
                    continue
                if "tts_first_audio_ms" not in turn.metrics:
                    audio = without_leading_silence(audio)  # heard from its first sound on
                    turn.metrics["tts_first_audio_ms"] = plan.ms_since_t0()
                spoken.duration_ms += audio.duration_s * 1000
                await send_audio(turn, audio.to_s16le(), audio.sample_rate, text)
        plan.health.worked(plan.tts_slot)


async def _run_sequential(
    turn: Turn, plan: ReplyPlan, emit_token: Emit, send_audio: AudioSink
) -> None:
    """Baseline: generate the whole reply, synthesize all of it, only then send the audio."""
    text_queue: asyncio.Queue[str | None] = asyncio.Queue()
    await _generate(turn, plan, text_queue, emit_token)
    pieces: list[str] = []
    while (piece := text_queue.get_nowait()) is not None:
        pieces.append(piece)
    held: list[tuple[bytes, int, str]] = []
    for text in pieces:
        spoken = SpokenChunk(text, 0.0)
        turn.chunks.append(spoken)
        with plan.health.watch(plan.tts_slot), plan.speaking():
            async for audio in plan.tts.synthesize_stream(
                text, language=plan.language, voice=plan.voice
            ):
                if not held:
                    audio = without_leading_silence(audio)
                spoken.duration_ms += audio.duration_s * 1000
                held.append((audio.to_s16le(), audio.sample_rate, text))
        plan.health.worked(plan.tts_slot)
    turn.metrics["tts_first_audio_ms"] = plan.ms_since_t0()
    for pcm, rate, text in held:
        await send_audio(turn, pcm, rate, text)
