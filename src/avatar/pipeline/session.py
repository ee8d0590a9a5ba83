"""One voice conversation: audio in, endpointing, turns out, barge-in.

A ``VoiceSession`` is fed client messages one at a time (``handle``) and speaks through ``send``.
Each assistant reply is a :class:`Turn` running in its own task; barge-in bumps the generation,
cancels that task (LLM and TTS stop at their next token or chunk) and stores what was heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from avatar.api.ws import events
from avatar.api.ws.protocol import (
    SAMPLE_RATE_IN,
    AudioIn,
    ClientMessage,
    ConfigMsg,
    PlaybackMsg,
    Simple,
    TextMsg,
)
from avatar.audio.pcm import PcmAudio
from avatar.engines.base import GenerationOptions, SttStream, VoiceRef
from avatar.engines.hub import EngineHub
from avatar.errors import AvatarError
from avatar.pipeline.context import ConversationContext
from avatar.pipeline.echo import EchoGuard
from avatar.pipeline.endpointing import (
    Endpointer,
    EndpointerConfig,
    SpeechDiscarded,
    SpeechEnd,
    SpeechStart,
)
from avatar.pipeline.hallucinations import is_hallucination, unheard_speech
from avatar.pipeline.language import session_language, stt_language, turn_language
from avatar.pipeline.responder import ReplyPlan, run_reply
from avatar.pipeline.turn import Turn
from avatar.text.script import to_script

log = logging.getLogger("avatar.session")
Send = Callable[[dict[str, Any]], Awaitable[None]]
FRAME = 512  # samples per VAD frame at 16 kHz (32 ms)
FRAME_MS = FRAME * 1000 / SAMPLE_RATE_IN
TAIL_MS = 150.0  # audio kept after the last voiced frame (soft word endings)


class ClientGone(Exception):
    """The transport can no longer deliver events (client left or stopped reading)."""


def root_cause(exc: BaseException) -> BaseException:
    """The first meaningful error inside (nested) exception groups: ClientGone wins."""
    if isinstance(exc, BaseExceptionGroup):
        causes = [root_cause(e) for e in exc.exceptions]
        gone = [c for c in causes if isinstance(c, ClientGone)]
        return (gone or causes)[0]
    return exc


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What the client chose for this session (``config`` messages change it)."""

    language: str | None = None  # None: detect from speech
    tts_mode: str = "auto"
    voice_profile_id: str | None = None
    system_prompt: str | None = None
    hands_free: bool = True
    backchannel_ms: float = 600.0  # speech shorter than this during a reply does not interrupt


class TurnRecorder(Protocol):
    """Stores finished turns (user and assistant text and audio, metrics, interrupted flag)."""

    async def record(
        self,
        session_id: str,
        turn: Turn,
        user_audio: PcmAudio | None,
        reply_audio: list[tuple[bytes, int]],
        interrupted: bool,
    ) -> int | None:
        """Store the turn; returns its index in the session."""

    async def mark_interrupted(self, session_id: str, index: int, heard_text: str) -> None:
        """A stored turn was cut off while its audio was still playing."""


class VoiceResolver(Protocol):
    async def voice(self, profile_id: str) -> VoiceRef: ...


class VoiceSession:
    """The state of one /ws/chat connection."""

    def __init__(
        self,
        hub: EngineHub,
        session_id: str,
        send: Send,
        *,
        config: SessionConfig | None = None,
        recorder: TurnRecorder | None = None,
        voices: VoiceResolver | None = None,
        on_turn_end: Callable[[dict[str, float | None], bool], None] | None = None,
    ) -> None:
        s = hub.settings
        self.hub, self.session_id, self._send = hub, session_id, send
        self.config = config or SessionConfig(tts_mode=s.tts.mode)
        self.recorder, self.voices = recorder, voices
        self.on_turn_end = on_turn_end  # metrics (Prometheus histograms)
        self.vad = hub.new_vad()
        self.endpointer = Endpointer(EndpointerConfig.from_settings(s.vad))
        self.context = ConversationContext(
            s.llm.system_prompt, s.llm.context_tokens // 2, hub.llm.count_tokens
        )
        self.echo = EchoGuard()
        self.generation = 0
        self.turn: Turn | None = None
        self._turn_task: asyncio.Task[None] | None = None
        self._pending = np.zeros(0, dtype=np.float32)  # samples not yet framed
        self._audio: list[np.ndarray] = []  # the stream since the last utterance, framed
        self._stream_start_ms = 0.0  # stream time of self._audio[0]
        self._reply_audio: list[tuple[bytes, int]] = []
        self._detected_language: str | None = None
        self._user_audio: PcmAudio | None = None
        self._partials: SttStream | None = None  # live partial transcription of the utterance
        self._playback_until = 0.0  # monotonic estimate of when the client finishes playing
        self._overlapped = False  # the current utterance began while a reply was audible
        self.websocket: Any = None  # set by the transport, used to close it on shutdown

    # --- messages -----------------------------------------------------------------------------

    async def handle(self, msg: ClientMessage) -> None:
        if isinstance(msg, AudioIn):
            await self._on_audio(PcmAudio.from_s16le(msg.pcm, SAMPLE_RATE_IN).samples)
        elif isinstance(msg, ConfigMsg):
            await self._configure(msg)
        elif isinstance(msg, TextMsg):
            await self._start_turn(msg.text.strip(), None, time.monotonic(), {})
        elif isinstance(msg, PlaybackMsg):
            if self.turn and self.turn.id == msg.turn_id:
                self.turn.report_playback(msg.played_ms)
        elif isinstance(msg, Simple):
            if msg.type == "ping":
                await self._send(events.pong())
            elif msg.type == "interrupt":
                await self.interrupt("client")
            else:
                await self._end_of_utterance()

    async def _configure(self, msg: ConfigMsg) -> None:
        changes = {k: v for k, v in msg.model_dump(exclude={"type"}).items() if v is not None}
        if "language" in changes:  # checked (unknown tags refused), "auto" -> None
            changes["language"] = session_language(changes["language"])
        if changes.get("voice_profile_id") and self.voices is not None:
            await self.voices.voice(changes["voice_profile_id"])  # unknown id: error, no change
        if "tts_mode" in changes:
            self.hub.tts_modes.select(changes["tts_mode"])  # raises if hq is not configured
        self.config = replace(self.config, **changes)
        if "system_prompt" in changes:
            self.context.system_prompt = changes["system_prompt"]
        await self._send({"type": "config", **self.public_config()})

    def public_config(self) -> dict[str, Any]:
        c = self.config
        return {
            "language": c.language or "auto",
            "tts_mode": c.tts_mode,
            "voice_profile_id": c.voice_profile_id,
            "hands_free": c.hands_free,
        }

    # --- audio and endpointing ----------------------------------------------------------------

    async def _on_audio(self, samples: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, samples])
        while len(self._pending) >= FRAME:
            frame, self._pending = self._pending[:FRAME], self._pending[FRAME:]
            self._audio.append(frame)
            for event in self.endpointer.process(self.vad.probability(frame), FRAME_MS):
                await self._on_endpoint(event)
            if self._partials is not None:
                await self._feed_partials(frame)
            await self._check_barge_in()
            self._trim_idle_audio()

    def _trim_idle_audio(self) -> None:
        """Keep only the pre-roll while nobody speaks, so memory stays bounded."""
        if self.endpointer.in_speech:
            return
        if self.config.hands_free:
            keep = int(self.endpointer.config.pre_roll_ms / FRAME_MS) + 2
        else:  # push-to-talk keeps everything up to the longest utterance
            keep = int(self.endpointer.config.max_utterance_ms / FRAME_MS)
        if len(self._audio) > keep:
            self._stream_start_ms += (len(self._audio) - keep) * FRAME_MS
            del self._audio[:-keep]

    async def _on_endpoint(self, event: SpeechStart | SpeechEnd | SpeechDiscarded) -> None:
        if not isinstance(event, SpeechStart):
            await self._close_partials()
        if isinstance(event, SpeechStart):
            self._overlapped = self._replying or time.monotonic() < self._playback_until + 1.0
            await self._send(events.speech(True))
            await self._open_partials()
        elif isinstance(event, SpeechEnd) and self.config.hands_free:
            await self._send(events.speech(False))
            if self._audible and event.speech_ms < self.config.backchannel_ms:
                return  # a backchannel ("uh-huh") while AVATAR speaks: not a turn
            onset = event.end_ms - event.speech_ms
            audio = self._take_audio(onset - self.endpointer.config.pre_roll_ms, event.end_ms)
            t0 = time.monotonic() - (event.detected_ms - event.end_ms) / 1000
            metrics = {
                "endpointing_ms": round(event.detected_ms - event.end_ms, 1),
                "user_speech_ms": round(event.speech_ms, 1),
            }
            await self._start_turn(None, audio, t0, metrics)

    # --- partial transcripts (streaming STT engines only) ---------------------------------------

    async def _open_partials(self) -> None:
        """Stream the utterance into a streaming STT engine for live partial transcripts."""
        open_stream = getattr(self.hub.stt, "open_stream", None)
        if open_stream is None or not self.hub.stt.capabilities.streaming:
            return
        try:
            self._partials = open_stream(language=self.config.language or self._detected_language)
        except AvatarError:
            return  # e.g. an English-only engine in another language: finals only
        if self._audio:  # the pre-roll and the frames that confirmed the speech
            await self._feed_partials(np.concatenate(self._audio))

    async def _feed_partials(self, samples: np.ndarray) -> None:
        assert self._partials is not None
        text = await self._partials.feed(PcmAudio(samples, SAMPLE_RATE_IN))
        if text and text.strip():
            await self._send(events.transcript(text.strip(), final=False))

    async def _close_partials(self) -> None:
        stream, self._partials = self._partials, None
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.aclose()

    async def _end_of_utterance(self) -> None:
        """Push-to-talk: the client says the user stopped talking."""
        for event in self.endpointer.force_end():
            await self._on_endpoint(event)
        if not self.config.hands_free:
            audio = self._take_audio(None, None)
            if self._has_speech(audio):
                await self._start_turn(None, audio, time.monotonic(), {"endpointing_ms": 0.0})

    def _has_speech(self, audio: PcmAudio) -> bool:
        vad = self.hub.new_vad()
        frames = len(audio.samples) // FRAME
        voiced = sum(
            vad.probability(audio.samples[i * FRAME : (i + 1) * FRAME]) >= 0.5
            for i in range(frames)
        )
        return voiced * FRAME_MS >= self.hub.settings.vad.min_speech_ms

    def _take_audio(self, start_ms: float | None, end_ms: float | None) -> PcmAudio:
        """Cut the utterance out of the buffered stream (stream-time ms) and clear the buffer."""
        samples = np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)

        def index(ms: float) -> int:
            return max(0, int((ms - self._stream_start_ms) * SAMPLE_RATE_IN / 1000))

        lo = index(start_ms) if start_ms is not None else 0
        hi = index(end_ms + TAIL_MS) if end_ms is not None else len(samples)
        self._stream_start_ms += len(samples) * 1000 / SAMPLE_RATE_IN
        self._audio = []
        return PcmAudio(samples[lo:hi].astype(np.float32), SAMPLE_RATE_IN)

    # --- barge-in -----------------------------------------------------------------------------

    @property
    def _replying(self) -> bool:
        return self._turn_task is not None and not self._turn_task.done()

    @property
    def _audible(self) -> bool:
        """A reply is being generated, or its audio is probably still playing at the client."""
        return self._replying or time.monotonic() < self._playback_until

    async def _check_barge_in(self) -> None:
        if (
            self._audible
            and self.config.hands_free
            and self.endpointer.in_speech
            and self.endpointer.speech_ms >= self.config.backchannel_ms
        ):
            await self.interrupt("barge_in")

    async def interrupt(self, reason: str) -> None:
        """Stop the reply now: drop its pending audio, cancel LLM and TTS, keep what was heard."""
        task, turn = self._turn_task, self.turn
        if turn is not None and task is not None and not task.done() and turn.complete:
            await asyncio.shield(task)  # generated in full and being stored: let it finish
        if turn is not None and task is not None and task.done():
            late = reason in ("barge_in", "client") and not turn.interrupted
            if late and time.monotonic() < self._playback_until:
                await self._interrupt_playback(turn, reason)
            return
        if task is None or task.done() or turn is None:
            return
        self.generation += 1
        turn.interrupted = True
        self._playback_until = 0.0  # nothing more of this reply will play
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.echo.stopped()
        heard = turn.heard_text()
        await self._send(events.interrupted(turn.id, heard, reason))
        await self._finish_turn(turn, interrupted=True)

    async def _interrupt_playback(self, turn: Turn, reason: str) -> None:
        """The reply was fully generated but the user talks over its audio: keep what was heard."""
        turn.interrupted = True
        self._playback_until = 0.0
        self.echo.stopped()
        if turn.played_ms is None and turn.first_audio_at is not None:
            turn.report_playback((time.monotonic() - turn.first_audio_at) * 1000)  # estimate
        heard = turn.heard_text()
        await self._send(events.interrupted(turn.id, heard, reason))
        if self.recorder is not None and turn.stored_index is not None:
            try:
                await self.recorder.mark_interrupted(self.session_id, turn.stored_index, heard)
            except Exception:
                log.exception("could not mark turn %s interrupted", turn.id)

    # --- turns --------------------------------------------------------------------------------

    async def _start_turn(
        self, text: str | None, audio: PcmAudio | None, t0: float, metrics: dict[str, float | None]
    ) -> None:
        await self.interrupt("new_turn")
        self.generation += 1
        turn = Turn(self.generation, t0=t0, metrics=dict(metrics))
        self.turn = turn
        self._reply_audio = []
        self._turn_task = asyncio.create_task(self._run_turn(turn, text, audio, t0))

    async def _run_turn(
        self, turn: Turn, text: str | None, audio: PcmAudio | None, t0: float
    ) -> None:
        try:
            if audio is not None:
                text = await self._transcribe(turn, audio, t0)
                if text is None:
                    return
            assert text is not None
            turn.user_text = text
            turn.language = turn.language or turn_language(self.config.language, None, text)
            self._user_audio = audio
            await self._reply(turn, t0)
            turn.complete = True  # from here on the turn is stored, never cancelled
            await self._finish_turn(turn, interrupted=False)
        except asyncio.CancelledError:
            raise
        except Exception as raised:
            exc = root_cause(raised)  # the reply stage's TaskGroup wraps errors in a group
            if isinstance(exc, ClientGone):
                return
            with contextlib.suppress(ClientGone):
                if isinstance(exc, AvatarError):
                    await self._send(events.error(exc.code, str(exc), turn_id=turn.id))
                    await self._finish_turn(turn, interrupted=False, failed=True)
                else:
                    log.exception("turn %s failed", turn.id, exc_info=raised)
                    await self._send(
                        events.error("internal_error", "the turn failed", turn_id=turn.id)
                    )

    async def _transcribe(self, turn: Turn, audio: PcmAudio, t0: float) -> str | None:
        start = time.monotonic()
        # The language follows the user turn by turn (Whisper reads it off the encoder pass it
        # makes anyway); a configured language overrides detection.
        language = stt_language(self.config.language)
        with self.hub.health.watch("stt"):
            result = await self.hub.stt.transcribe(audio, language=language)
        self.hub.health.worked("stt")
        turn.metrics["stt_ms"] = round((time.monotonic() - start) * 1000, 1)
        text = result.text.strip()
        speech_ms = turn.metrics.get("user_speech_ms")
        if not text or is_hallucination(
            text, no_speech_probability=result.no_speech_probability, speech_ms=speech_ms
        ):
            unheard_speech(speech_ms or audio.duration_s * 1000, text)  # long: error, not silence
            return None  # noise or silence: no phantom turn
        turn.language = turn_language(self.config.language, result.language, text)
        text = to_script(text, turn.language)  # in the user's script, as the reply is
        if self._overlapped and self.echo.is_echo(text):
            log.info("turn %s: transcript dropped as echo of the reply", turn.id)
            return None  # AVATAR hearing itself through the speakers
        self._detected_language = result.language or self._detected_language
        await self._send(
            events.transcript(text, final=True, turn_id=turn.id, language=turn.language)
        )
        return text

    async def _reply(self, turn: Turn, t0: float) -> None:
        selection = self.hub.tts_modes.select(self.config.tts_mode)  # type: ignore[arg-type]
        turn.tts_mode = selection.mode_used
        voice = None
        if self.config.voice_profile_id and self.voices:
            voice = await self.voices.voice(self.config.voice_profile_id)
        self.context.language = turn.language  # the system prompt in the turn's language
        self.context.add_user(turn.user_text)
        cfg = self.hub.settings.llm
        plan = ReplyPlan(
            self.hub.llm,
            selection.engine,
            selection.mode_used,
            self.context.messages(),
            GenerationOptions(max_tokens=cfg.max_tokens, temperature=cfg.temperature),
            turn.language or "en",
            voice,
            t0,
            sequential=self.hub.settings.pipeline == "sequential",
            health=self.hub.health,
        )
        await run_reply(turn, plan, self._guarded(turn.generation), self._audio_sink)

    def _guarded(self, generation: int) -> Send:
        async def send(event: dict[str, Any]) -> None:
            if generation == self.generation:  # stale output of an interrupted turn is dropped
                await self._send(event)

        return send

    async def _audio_sink(self, turn: Turn, pcm: bytes, rate: int, text: str) -> None:
        if turn.generation != self.generation:
            return
        seq = len(self._reply_audio)
        self.echo.playing(text)
        self._reply_audio.append((pcm, rate))
        now = time.monotonic()
        self._playback_until = max(self._playback_until, now) + len(pcm) / 2 / rate
        await self._send(events.audio_response(pcm, rate, turn.id, seq, text))
        if seq == 0:
            turn.first_audio_at = now
            turn.metrics["voice_to_voice_ms"] = round((time.monotonic() - turn.t0) * 1000, 1)
            first_text = turn.metrics.get("first_text_ms") or 0.0
            tts_wait = (turn.metrics.get("tts_first_audio_ms") or first_text) - first_text
            if turn.tts_mode in ("fast", "hq"):
                self.hub.tts_modes.observe_first_audio(turn.tts_mode, tts_wait / 1000)

    async def _finish_turn(self, turn: Turn, *, interrupted: bool, failed: bool = False) -> None:
        """Store the turn, then tell the client: a turn_end the client saw is never lost."""
        text = turn.heard_text() if interrupted else turn.reply_text.strip()
        if not failed:
            self.context.add_assistant(text, interrupted=interrupted)
        if self.on_turn_end is not None:
            self.on_turn_end(turn.metrics, interrupted)
        if self.recorder is not None and turn.user_text:
            try:
                turn.stored_index = await self.recorder.record(
                    self.session_id, turn, self._user_audio, list(self._reply_audio), interrupted
                )
            except Exception:
                log.exception("could not store turn %s", turn.id)
                await self._send(
                    events.error("storage_failed", "the turn could not be stored", turn_id=turn.id)
                )
        await self._send(
            events.turn_end(
                turn.id, turn.metrics, interrupted=interrupted, text=text, tts_mode=turn.tts_mode
            )
        )

    async def close(self) -> None:
        await self._close_partials()
        await self.interrupt("closed")
