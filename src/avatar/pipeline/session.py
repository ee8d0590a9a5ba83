"""One voice conversation: audio → endpoint → start turn → reply → finish turn.

A ``VoiceSession`` takes typed inputs (:meth:`VoiceSession.feed_audio`, ``configure``,
``submit_text``, ``report_playback``, ``interrupt``, ``end_utterance``, ``ping``) and says
everything through one ``emit`` callback of :mod:`avatar.pipeline.events`; it knows no
transport. Each assistant reply is a :class:`Turn` running as the current :class:`Generation`;
barge-in cancels that generation (LLM and TTS stop at their next token or chunk, stale output is
dropped) and stores what was heard. Time comes from an injected :class:`Clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import GenerationOptions, VoiceActivityDetector, VoiceRef
from avatar.engines.hub import EngineHub
from avatar.errors import AvatarError
from avatar.pipeline.clock import MONOTONIC, Clock
from avatar.pipeline.config import ConfigChange, SessionConfig
from avatar.pipeline.context import ConversationContext
from avatar.pipeline.ducking import Hearing, ReplyDucker
from avatar.pipeline.echo import EchoGuard
from avatar.pipeline.endpointing import EndpointerConfig, EndpointEvent, SpeechEnd, SpeechStart
from avatar.pipeline.events import (
    ClientGone,
    ConfigChanged,
    Emit,
    Error,
    Interrupted,
    InterruptReason,
    Pong,
    PublicConfig,
    ReplyAudio,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    TurnEnd,
)
from avatar.pipeline.generation import Generation
from avatar.pipeline.hallucinations import is_hallucination, unheard_speech
from avatar.pipeline.language import (
    session_language,
    stt_language,
    turn_language,
    with_chinese_script,
)
from avatar.pipeline.listener import Listener
from avatar.pipeline.partials import PartialTranscripts
from avatar.pipeline.playback import PlaybackClock
from avatar.pipeline.responder import ReplyPlan, run_reply
from avatar.pipeline.turn import Turn, TurnState
from avatar.pipeline.utterance import FRAME_MS
from avatar.text.script import to_script

__all__ = ["ClientGone", "SessionConfig", "TurnRecorder", "VoiceResolver", "VoiceSession"]

log = logging.getLogger("avatar.session")
Metrics = dict[str, float | None]


def root_cause(exc: BaseException) -> BaseException:
    """The first meaningful error inside (nested) exception groups: ClientGone wins."""
    if isinstance(exc, BaseExceptionGroup):
        causes = [root_cause(e) for e in exc.exceptions]
        gone = [c for c in causes if isinstance(c, ClientGone)]
        return (gone or causes)[0]
    return exc


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

    async def mark_interrupted(
        self, session_id: str, index: int, heard_text: str, heard_ms: float | None = None
    ) -> None:
        """A stored turn was cut off while its audio played (heard up to ``heard_ms``)."""


class VoiceResolver(Protocol):
    async def voice(self, profile_id: str) -> VoiceRef: ...


class VoiceSession:
    """The state of one voice conversation (one /ws/chat connection)."""

    def __init__(
        self,
        hub: EngineHub,
        session_id: str,
        emit: Emit,
        *,
        config: SessionConfig | None = None,
        recorder: TurnRecorder | None = None,
        voices: VoiceResolver | None = None,
        on_turn_end: Callable[[Metrics, bool], None] | None = None,
        clock: Clock = MONOTONIC,
        new_vad: Callable[[], VoiceActivityDetector] | None = None,
    ) -> None:
        s = hub.settings
        self.hub, self.session_id, self._emit, self.clock = hub, session_id, emit, clock
        self.config = config or SessionConfig(tts_mode=s.tts.mode)
        self.recorder, self.voices = recorder, voices
        self.on_turn_end = on_turn_end  # metrics (Prometheus histograms)
        self.listener = Listener(EndpointerConfig.from_settings(s.vad), new_vad or hub.new_vad)
        self.partials = PartialTranscripts()
        self.context = ConversationContext(
            s.llm.system_prompt, s.llm.context_tokens // 2, hub.llm.count_tokens
        )
        self.echo = EchoGuard()
        self.playback = PlaybackClock(clock)
        self.replies = Generation()
        self.ducker = ReplyDucker(backchannel_ms=self.config.backchannel_ms)
        self.turn: Turn | None = None
        self._detected_language: str | None = None
        self._overlapped = False  # the current utterance began while a reply was audible
        self.websocket: Any = None  # set by the transport, which closes it on shutdown

    # --- inputs -------------------------------------------------------------------------------

    async def feed_audio(self, audio: PcmAudio) -> None:
        """Microphone audio (mono 16 kHz): endpointing, partial transcripts, barge-in."""
        for frame, endpoints in self.listener.push(audio.samples):
            for event in endpoints:
                await self._on_endpoint(event)
            await self._show_partial(frame)
            await self._duck()
            await self._check_barge_in()
            self.listener.trim_idle(hands_free=self.config.hands_free)

    async def configure(self, change: ConfigChange) -> None:
        """Change the session; a bad value raises (AvatarError) and changes nothing."""
        changes = change.changes()
        if "language" in changes:  # checked (unknown tags refused), "auto" -> None
            changes["language"] = session_language(str(changes["language"]))
            self._detected_language = None
        if changes.get("voice_profile_id") and self.voices is not None:
            await self.voices.voice(str(changes["voice_profile_id"]))  # unknown id: error
        if "tts_mode" in changes:
            self.hub.tts_modes.select(changes["tts_mode"])  # type: ignore[arg-type]
        self.config = replace(self.config, **changes)  # type: ignore[arg-type]
        if "system_prompt" in changes:
            self.context.system_prompt = str(changes["system_prompt"])
        await self._emit(ConfigChanged(self.public_config()))

    async def submit_text(self, text: str) -> None:
        """A typed message: a turn without audio."""
        await self._start_turn(text=text.strip(), t0=self.clock.now(), metrics={})

    async def report_playback(self, turn_id: str, played_ms: float) -> None:
        """The client has played ``played_ms`` of the turn's audio (makes "heard" exact)."""
        if self.turn is not None and self.turn.id == turn_id:
            self.turn.report_playback(played_ms)

    async def end_utterance(self) -> None:
        """Push-to-talk: the client says the user stopped talking."""
        for event in self.listener.force_end():
            await self._on_endpoint(event)
        if not self.config.hands_free:
            audio = self.listener.buffer.cut()
            if self.listener.has_speech(audio):
                metrics: Metrics = {"endpointing_ms": 0.0}
                await self._start_turn(audio=audio, t0=self.clock.now(), metrics=metrics)

    async def ping(self) -> None:
        await self._emit(Pong())

    def public_config(self) -> PublicConfig:
        return self.config.public()

    async def close(self) -> None:
        await self.partials.close()
        await self.interrupt(InterruptReason.CLOSED)

    # --- audio → endpoint ---------------------------------------------------------------------

    async def _on_endpoint(self, event: EndpointEvent) -> None:
        if isinstance(event, SpeechStart):
            await self._speech_started()
            return
        await self.partials.close()
        if isinstance(event, SpeechEnd) and self.config.hands_free:
            await self._speech_ended(event)

    async def _speech_started(self) -> None:
        self._overlapped = self.replies.running or self.playback.playing(grace_s=1.0)
        await self._emit(SpeechStarted())
        if self.partials.open(self.hub.stt, self._language()):
            await self._show_partial(self.listener.buffer.backlog())

    async def _speech_ended(self, end: SpeechEnd) -> None:
        await self._emit(SpeechStopped())
        if self._audible and end.speech_ms < self.config.backchannel_ms:
            return  # a backchannel ("uh-huh") while AVATAR speaks: not a turn
        audio = self.listener.cut_utterance(end)
        waited_ms = end.detected_ms - end.end_ms
        metrics: Metrics = {
            "endpointing_ms": round(waited_ms, 1),
            "user_speech_ms": round(end.speech_ms, 1),
        }
        await self._start_turn(audio=audio, t0=self.clock.now() - waited_ms / 1000, metrics=metrics)

    async def _show_partial(self, samples: np.ndarray) -> None:
        text = await self.partials.feed(samples)
        if text is not None:
            await self._emit(Transcript(text, final=False))

    # --- barge-in -----------------------------------------------------------------------------

    @property
    def _audible(self) -> bool:
        """A reply is being generated, or its audio is probably still playing at the client."""
        return self.replies.running or self.playback.playing()

    async def _duck(self) -> None:
        """Quiet the reply at the first voiced frame; resume it if the voice takes no turn."""
        turn = self.turn
        if turn is not None and turn.interrupted:
            self.ducker.forget()  # its `interrupted` went out: nothing to resume
        audible = turn is not None and self._audible and self.config.hands_free
        endpointer = self.listener.endpointer
        hearing = Hearing(
            endpointer.state, endpointer.speech_ms, FRAME_MS, turn.id if audible and turn else None
        )
        if (event := self.ducker.step(hearing)) is not None:
            await self._emit(event)

    async def _check_barge_in(self) -> None:
        speech_ms = self.listener.speech_ms
        if self._audible and self.config.hands_free and speech_ms >= self.config.backchannel_ms:
            await self.interrupt(InterruptReason.BARGE_IN)

    async def interrupt(self, reason: InterruptReason = InterruptReason.CLIENT) -> None:
        """Stop the reply now: drop its pending audio, cancel LLM and TTS, keep what was heard."""
        turn = self.turn
        if turn is None:
            return
        if turn.state is TurnState.GENERATED:
            await self.replies.settle()  # generated in full and being stored: let it finish
        if turn.state is TurnState.INTERRUPTED:
            return
        if not self.replies.running:  # generation ended; its audio may still be playing
            if reason.by_user and self.playback.playing():
                await self._interrupt_playback(turn, reason)
            return
        turn.state = TurnState.INTERRUPTED
        self.playback.stop()  # nothing more of this reply will play
        await self.replies.cancel()
        self.echo.stopped()
        await self._emit(Interrupted(turn.id, turn.heard_text(), reason))
        await self._finish_turn(turn)

    async def _interrupt_playback(self, turn: Turn, reason: InterruptReason) -> None:
        """The reply was fully generated but the user talks over its audio: keep what was heard."""
        turn.state = TurnState.INTERRUPTED
        self.playback.stop()
        self.echo.stopped()
        if turn.played_ms is None and turn.first_audio_at is not None:
            turn.report_playback((self.clock.now() - turn.first_audio_at) * 1000)  # estimate
        heard = turn.heard_text()
        await self._emit(Interrupted(turn.id, heard, reason))
        if self.recorder is not None and turn.stored_index is not None:
            try:
                await self.recorder.mark_interrupted(
                    self.session_id, turn.stored_index, heard, turn.played_ms
                )
            except Exception:
                log.exception("could not mark turn %s interrupted", turn.id)

    # --- start turn → reply → finish turn -----------------------------------------------------

    async def _start_turn(
        self,
        *,
        text: str | None = None,
        audio: PcmAudio | None = None,
        t0: float,
        metrics: Metrics,
    ) -> None:
        await self.interrupt(InterruptReason.NEW_TURN)

        def run(generation: int) -> Coroutine[Any, Any, None]:
            self.turn = Turn(generation, t0=t0, metrics=dict(metrics), user_audio=audio)
            return self._run_turn(self.turn, text)

        self.replies.begin(run)

    async def _run_turn(self, turn: Turn, text: str | None) -> None:
        try:
            if turn.user_audio is not None:
                text = await self._transcribe(turn, turn.user_audio)
            if text is None:
                return
            turn.user_text = text
            turn.language = turn.language or self._turn_language(None, text)
            await self._reply(turn)
            turn.state = TurnState.GENERATED  # from here on the turn is stored, never cancelled
            await self._finish_turn(turn)
        except asyncio.CancelledError:
            raise
        except Exception as raised:
            await self._turn_failed(turn, raised)

    def _turn_language(self, detected: str | None, text: str) -> str:
        """The turn's language tag, Chinese in the script the user reads."""
        language = turn_language(self.config.language, detected, text)
        return with_chinese_script(language, self.config.chinese_script)

    def _language(self) -> str | None:
        """The language partial transcripts use: the configured one, else the last detected."""
        return stt_language(self.config.language) or self._detected_language

    async def _transcribe(self, turn: Turn, audio: PcmAudio) -> str | None:
        start = self.clock.now()
        # The language follows the user turn by turn (Whisper reads it off the encoder pass it
        # makes anyway); a configured language overrides detection.
        language = stt_language(self.config.language)
        with self.hub.health.watch("stt"):
            result = await self.hub.stt.transcribe(audio, language=language)
        self.hub.health.worked("stt")
        turn.metrics["stt_ms"] = round((self.clock.now() - start) * 1000, 1)
        text = result.text.strip()
        speech_ms = turn.metrics.get("user_speech_ms")
        if not text or is_hallucination(
            text, no_speech_probability=result.no_speech_probability, speech_ms=speech_ms
        ):
            unheard_speech(speech_ms or audio.duration_s * 1000, text)  # long: error, not silence
            return None  # noise or silence: no phantom turn
        turn.language = self._turn_language(result.language, text)
        text = to_script(text, turn.language)  # in the user's script, as the reply is
        if self._overlapped and self.echo.is_echo(text):
            log.info("turn %s: transcript dropped as echo of the reply", turn.id)
            return None  # AVATAR hearing itself through the speakers
        self._detected_language = result.language or self._detected_language
        await self._emit(Transcript(text, final=True, turn_id=turn.id, language=turn.language))
        return text

    async def _reply(self, turn: Turn) -> None:
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
            turn.t0,
            sequential=self.hub.settings.pipeline == "sequential",
            health=self.hub.health,
            clock=self.clock,
        )
        emit = self.replies.guard(turn.generation, self._emit)  # stale output is dropped
        await run_reply(turn, plan, emit, self._send_audio)

    async def _send_audio(self, turn: Turn, pcm: bytes, rate: int, text: str) -> None:
        if not self.replies.is_current(turn.generation):
            return
        seq = len(turn.reply_audio)
        self.echo.playing(text)
        turn.reply_audio.append((pcm, rate))
        sent_at = self.clock.now()
        self.playback.sent(len(pcm) / 2 / rate)
        await self._emit(ReplyAudio(pcm, rate, turn.id, seq, text))
        if seq == 0:
            self._first_audio_sent(turn, sent_at)

    def _first_audio_sent(self, turn: Turn, sent_at: float) -> None:
        turn.first_audio_at = sent_at
        turn.metrics["voice_to_voice_ms"] = round((self.clock.now() - turn.t0) * 1000, 1)
        first_text = turn.metrics.get("first_text_ms") or 0.0
        tts_wait = (turn.metrics.get("tts_first_audio_ms") or first_text) - first_text
        if turn.tts_mode in ("fast", "hq"):
            self.hub.tts_modes.observe_first_audio(turn.tts_mode, tts_wait / 1000)

    async def _finish_turn(self, turn: Turn, *, failed: bool = False) -> None:
        """Store the turn, then tell the client: a turn_end the client saw is never lost."""
        interrupted = turn.interrupted
        text = turn.heard_text() if interrupted else turn.reply_text.strip()
        if not failed:
            self.context.add_assistant(text, interrupted=interrupted)
        if self.on_turn_end is not None:
            self.on_turn_end(turn.metrics, interrupted)
        if self.recorder is not None and turn.user_text:
            try:
                turn.stored_index = await self.recorder.record(
                    self.session_id, turn, turn.user_audio, list(turn.reply_audio), interrupted
                )
            except Exception:
                log.exception("could not store turn %s", turn.id)
                await self._emit(Error("storage_failed", "the turn could not be stored", turn.id))
        await self._emit(TurnEnd(turn.id, dict(turn.metrics), interrupted, text, turn.tts_mode))

    async def _turn_failed(self, turn: Turn, raised: Exception) -> None:
        exc = root_cause(raised)  # the reply stage's TaskGroup wraps errors in a group
        if isinstance(exc, ClientGone):
            return
        with contextlib.suppress(ClientGone):
            if isinstance(exc, AvatarError):
                await self._emit(Error(exc.code, str(exc), turn_id=turn.id))
                await self._finish_turn(turn, failed=True)
            else:
                log.exception("turn %s failed", turn.id, exc_info=raised)
                await self._emit(Error("internal_error", "the turn failed", turn_id=turn.id))
