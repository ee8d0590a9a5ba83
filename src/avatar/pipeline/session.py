"""One voice conversation: audio → endpoint → decide → start turn → reply → finish turn.

A ``VoiceSession`` takes typed inputs (:meth:`VoiceSession.feed_audio`, ``configure``,
``submit_text``, ``report_playback``, ``interrupt``, ``end_utterance``, ``ping``) and says
everything through one ``emit`` callback of :mod:`avatar.pipeline.events`; it knows no
transport. Each assistant reply is a :class:`Turn` running as the current :class:`Generation`;
barge-in cancels that generation (LLM and TTS stop at their next token or chunk, stale output is
dropped) and stores what was heard. At a short pause :class:`TurnTaking` asks the end-of-turn
models while a held reply starts (:class:`Speculation`); the decision releases or drops it.
Time comes from an injected :class:`Clock`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import numpy as np

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import VoiceActivityDetector, read_ahead
from avatar.engines.hub import EngineHub
from avatar.pipeline.clock import MONOTONIC, Clock
from avatar.pipeline.config import ConfigChange, SessionConfig
from avatar.pipeline.context import ConversationContext
from avatar.pipeline.ducking import Hearing, ReplyDucker
from avatar.pipeline.echo import EchoGuard
from avatar.pipeline.end_of_turn import EndpointReason
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
    SessionEvent,
    SpeechStarted,
    SpeechStopped,
    Transcript,
)
from avatar.pipeline.finishing import Metrics, TurnFinisher
from avatar.pipeline.generation import Generation
from avatar.pipeline.hearing import hear
from avatar.pipeline.language import (
    session_language,
    stt_language,
    turn_language,
    with_chinese_script,
)
from avatar.pipeline.listener import Listener
from avatar.pipeline.partials import PartialTranscripts
from avatar.pipeline.playback import PlaybackClock
from avatar.pipeline.ports import TurnRecorder, VoiceResolver
from avatar.pipeline.reply_plan import plan_reply
from avatar.pipeline.responder import run_reply
from avatar.pipeline.speculation import HeldOutput, Speculation
from avatar.pipeline.turn import Turn, TurnState
from avatar.pipeline.turn_taking import Ending, Pause, TurnTaking
from avatar.pipeline.utterance import FRAME_MS
from avatar.text.script import to_script

__all__ = ["ClientGone", "SessionConfig", "TurnRecorder", "VoiceResolver", "VoiceSession"]
log = logging.getLogger("avatar.session")


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
        likely_language: str | None = None,
    ) -> None:
        """``likely_language``: what the user most likely speaks before a turn is heard (the
        server's last conversation's); Whisper trusts a doubtful detection of it on the first
        turn instead of decoding again padded (~0.7-1.8 s on two cores)."""
        s = hub.settings
        self.hub, self.session_id, self._emit, self.clock = hub, session_id, emit, clock
        self.config = config or SessionConfig(tts_mode=s.tts.mode)
        self.recorder, self.voices = recorder, voices
        self.turn_taking = TurnTaking(s, acoustic=hub.turn, llm=hub.llm, clock=clock)
        endpointer = self.turn_taking.endpointer_config(EndpointerConfig.from_settings(s.vad))
        self.listener = Listener(endpointer, new_vad or hub.new_vad)
        self.partials = PartialTranscripts()
        self.context = ConversationContext(
            s.llm.system_prompt, s.llm.context_tokens // 2, hub.llm.count_tokens
        )
        self.finisher = TurnFinisher(session_id, self.context, emit, recorder, on_turn_end)
        self.echo = EchoGuard()
        self.playback = PlaybackClock(clock)
        self.replies = Generation()
        self.speculation = Speculation(self.replies, clock)  # a held reply started at a pause
        self.ducker = ReplyDucker(backchannel_ms=self.config.backchannel_ms)
        self.turn: Turn | None = None
        self._detected_language = stt_language(likely_language)
        self._overlapped = False  # the current utterance began while a reply was audible
        self.websocket: Any = None  # set by the transport, which closes it on shutdown

    # --- inputs -------------------------------------------------------------------------------

    async def feed_audio(self, audio: PcmAudio) -> None:
        """Microphone audio (mono 16 kHz): endpointing, partial transcripts, barge-in."""
        with self.turn_taking.receiving():  # the client is not quiet while its audio is worked on
            for frame, endpoints in self.listener.push(audio.samples):
                for event in endpoints:
                    await self._on_endpoint(event)
                await self._on_pause(self.turn_taking.observe(self.listener.endpointer))
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
        await self._end_now("push_to_talk")
        if not self.config.hands_free:
            audio = self.listener.buffer.cut()
            if self.listener.has_speech(audio):
                metrics: Metrics = {"endpointing_ms": 0.0, "endpoint_reason": "push_to_talk"}
                await self._start_turn(audio=audio, t0=self.clock.now(), metrics=metrics)

    async def ping(self) -> None:
        await self._emit(Pong())

    def public_config(self) -> PublicConfig:
        return self.config.public()

    async def close(self) -> None:
        await self.partials.close()
        await self.turn_taking.close()
        await self.interrupt(InterruptReason.CLOSED)

    # --- audio → endpoint ---------------------------------------------------------------------

    async def _on_endpoint(self, event: EndpointEvent) -> None:
        if isinstance(event, SpeechStart):
            await self._speech_started()
            if self.config.hands_free:
                self.turn_taking.watch_starvation(self.listener.endpointer, self._end_now)
            return
        await self.partials.close()
        if isinstance(event, SpeechEnd):
            ending = self.turn_taking.ended(event)
            if self.config.hands_free:
                await self._speech_ended(event, ending)

    # --- decide: end of turn, speculative replies -----------------------------------------------

    async def _end_now(self, reason: EndpointReason) -> None:
        """End the utterance in progress now (a decision, starvation or the client's word)."""
        if self.listener.endpointer.in_speech:
            self.turn_taking.forced = reason
        for event in self.listener.force_end():
            await self._on_endpoint(event)

    async def _on_pause(self, pause: Pause | None) -> None:
        if pause is Pause.RESUMED:
            await self.speculation.drop()  # the user went on: the held reply was for nothing
        elif pause is Pause.REACHED and self.config.hands_free and not self._audible:
            self._speculate()

    def _speculate(self) -> None:
        """At a short pause: a held reply to the utterance so far, and the models asked."""
        endpointer = self.listener.endpointer
        audio = self.listener.utterance_so_far()
        t0 = self.clock.now() - endpointer.quiet_ms / 1000  # the sound's end
        metrics: Metrics = {"user_speech_ms": round(endpointer.speech_ms, 1)}

        def run(generation: int, output: HeldOutput) -> Coroutine[Any, Any, None]:
            self.turn = Turn(generation, t0=t0, metrics=metrics, user_audio=audio)
            return self._run_turn(self.turn, None, output)

        text_probability = self.speculation.start(run)
        self.turn_taking.judge(audio, text_probability, endpointer, self._end_now)

    async def _speech_started(self) -> None:
        # Echo is heard while the reply plays; 0.5 s covers the client's jitter buffer. A longer
        # grace took a user repeating the question right after the reply for the reply's echo.
        self._overlapped = self.replies.running or self.playback.playing(grace_s=0.5)
        await self._emit(SpeechStarted())
        if self.partials.open(self.hub.stt, self._language()):
            await self._show_partial(self.listener.buffer.backlog())

    async def _speech_ended(self, end: SpeechEnd, ending: Ending) -> None:
        await self._emit(SpeechStopped())
        if self._audible and end.speech_ms < self.config.backchannel_ms:
            return  # a backchannel ("uh-huh") while AVATAR speaks: not a turn
        audio = self.listener.cut_utterance(end)
        decided: Metrics = ending.metrics()
        if self.turn is not None and self.speculation.holding:
            held = self.turn  # the reply started at the pause is the answer: send it now
            decided["endpointing_ms"] = round((self.clock.now() - held.t0) * 1000, 1)
            await self.speculation.release(held.metrics, decided)
            return
        waited_ms = end.detected_ms - end.end_ms + end.lag_ms + ending.idle_ms
        metrics: Metrics = {
            "endpointing_ms": round(waited_ms, 1),
            "user_speech_ms": round(end.speech_ms, 1),
            **decided,
            **self.speculation.turn_metrics(),
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
        replying = self.replies.running and not self.speculation.holding
        return replying or self.playback.playing()

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
        if self.speculation.holding:
            await self.speculation.drop()  # never shown to the client: nothing to tell it
            return
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
        await self.finisher.finish(turn)

    async def _interrupt_playback(self, turn: Turn, reason: InterruptReason) -> None:
        """The reply was fully generated but the user talks over its audio: keep what was heard."""
        turn.state = TurnState.INTERRUPTED
        self.playback.stop()
        self.echo.stopped()
        if turn.played_ms is None and turn.first_audio_at is not None:
            turn.report_playback((self.clock.now() - turn.first_audio_at) * 1000)  # estimate
        heard = turn.heard_text()
        await self._emit(Interrupted(turn.id, heard, reason))
        await self.finisher.mark_interrupted(turn, heard)

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

    async def _run_turn(self, turn: Turn, text: str | None, held: HeldOutput | None = None) -> None:
        output = held or HeldOutput(held=False)
        try:
            if turn.user_audio is not None:
                text = await self._transcribe(turn, turn.user_audio, output)
            if text is not None:
                turn.user_text = text
                turn.language = turn.language or self._turn_language(None, text)
                # The system prompt in the turn's language, read by the end-of-turn pass and the
                # reply alike: the chat model's cache then holds one prompt, not two that differ
                # from their 15th token on.
                self.context.language = turn.language
            if output.held:
                await self._held_transcript(text, output)
            if text is None:
                return
            await self._reply(turn, output)
            output.work_done_at = self.clock.now()
            await output.wait()  # a held reply is stored only once the turn is confirmed
            turn.state = TurnState.GENERATED  # from here on the turn is stored, never cancelled
            await self.finisher.finish(turn)
            await self._read_ahead()
        except asyncio.CancelledError:
            raise
        except Exception as raised:
            await output.wait()
            await self.finisher.failed(turn, raised)
        finally:
            self.speculation.heard(None)  # a held reply that heard no words: no text signal

    async def _read_ahead(self) -> None:
        """While the reply plays, the chat model reads the conversation up to the next words,
        so the next end-of-turn pass and reply read only those (~40 % of the pass's tokens)."""
        try:
            await read_ahead(self.hub.llm, self.context.messages())
        except Exception:
            log.warning("the chat model could not read ahead", exc_info=True)

    async def _held_transcript(self, text: str | None, output: HeldOutput) -> None:
        """Tell the end-of-turn judge what the words say; without speculation, wait there."""
        messages = self.context.with_user(text) if text else None
        self.speculation.heard(
            await self.turn_taking.text_probability(messages) if messages else None
        )
        if not self.turn_taking.speculate:
            await output.wait()

    def _turn_language(self, detected: str | None, text: str) -> str:
        """The turn's language tag, Chinese in the script the user reads."""
        language = turn_language(self.config.language, detected, text)
        return with_chinese_script(language, self.config.chinese_script)

    def _language(self) -> str | None:
        """The language partial transcripts use: the configured one, else the last detected."""
        return stt_language(self.config.language) or self._detected_language

    async def _transcribe(self, turn: Turn, audio: PcmAudio, output: HeldOutput) -> str | None:
        # The language follows the user turn by turn (Whisper reads it off the encoder pass it
        # makes anyway, the last turn's language its likely answer); a configured language
        # overrides detection.
        stt_lang = stt_language(self.config.language)
        likely = self._detected_language
        heard = await hear(self.hub, audio, stt_lang, turn.metrics, self.clock, likely)
        if heard is None:
            return None  # noise or silence (long speech heard as nothing raised an error)
        turn.language = self._turn_language(heard.language, heard.text)
        text = to_script(heard.text, turn.language)  # in the user's script, as the reply is
        if self._overlapped and self.echo.is_echo(text):
            log.info("turn %s: transcript dropped as echo of the reply", turn.id)
            # AVATAR hearing itself through the speakers: not answered, but never in silence
            echo = Error("heard_own_voice", "that sounded like the assistant's own reply", turn.id)
            await output.send(lambda: self._emit(echo))
            return None
        self._detected_language = heard.language or self._detected_language
        final = Transcript(text, final=True, turn_id=turn.id, language=turn.language)
        await output.send(lambda: self._emit(final))
        return text

    async def _reply(self, turn: Turn, output: HeldOutput) -> None:
        messages = self.context.with_user(turn.user_text)  # stored when the turn is finished
        plan = await plan_reply(self.hub, self.config, self.voices, turn, messages, self.clock)
        emit = self.replies.guard(turn.generation, self._emit)  # stale output is dropped

        async def send_text(event: SessionEvent) -> None:
            await output.send(lambda: emit(event))

        async def send_audio(turn: Turn, pcm: bytes, rate: int, text: str) -> None:
            await output.send(lambda: self._send_audio(turn, pcm, rate, text))

        await run_reply(turn, plan, send_text, send_audio)

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
        first_text = float(turn.metrics.get("first_text_ms") or 0.0)
        tts_wait = float(turn.metrics.get("tts_first_audio_ms") or first_text) - first_text
        if turn.tts_mode in ("fast", "hq"):
            self.hub.tts_modes.observe_first_audio(turn.tts_mode, tts_wait / 1000)
