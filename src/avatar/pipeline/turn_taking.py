"""Turn-taking: the user's turn ends by a decision at each pause, not by one silence timer.

Per frame, :meth:`TurnTaking.observe` says when the endpointer has just reached a short pause
(``turn.start_silence_ms`` since the sound's end, often before the VAD has let go: start a held
reply, ask the end-of-turn models) or when the user went on after one (drop it).
:meth:`TurnTaking.judge` asks the acoustic model on the audio so far and takes the text
probability from the held reply's transcript;
:class:`EndOfTurnPolicy` decides once the silence has lasted ``turn.min_silence_ms``: the work
starts before the turn may end, so the transcript and the model's reading are mostly done then.
The endpointer's own hangover is the fallback silence (the plain VAD hangover when no model is
on), so an unfinished sentence ends there at the latest. A watchdog ends an utterance whose
client stopped sending audio after ``turn.starvation_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import ChatMessage, TurnAnalyzer, text_end_of_turn
from avatar.pipeline.clock import Clock
from avatar.pipeline.end_of_turn import EndOfTurnPolicy, EndpointReason, TurnEvidence
from avatar.pipeline.endpointing import (
    Endpointer,
    EndpointerConfig,
    EndpointState,
    SpeechEnd,
    UtteranceTooLong,
)

if TYPE_CHECKING:
    from avatar.settings import Settings

log = logging.getLogger("avatar.turn_taking")
OnEnd = Callable[[EndpointReason], Awaitable[None]]


class Pause(Enum):
    """What a frame did to a pause: reached it (ask, speculate) or ended it (drop)."""

    REACHED = "reached"
    RESUMED = "resumed"


@dataclass(frozen=True, slots=True)
class Ending:
    """How an utterance ended: the rule, the fused probability if asked, the client's silence."""

    reason: EndpointReason
    probability: float | None = None
    idle_ms: float = 0.0  # time without audio from the client (counted as endpointing wait)

    def metrics(self) -> dict[str, float | str | None]:
        return {"endpoint_reason": self.reason, "end_of_turn_probability": self.probability}


class TurnTaking:
    """When the user's turn ends: pauses, the end-of-turn models, fallback silence, starvation."""

    def __init__(
        self, settings: Settings, *, acoustic: TurnAnalyzer | None, llm: object, clock: Clock
    ) -> None:
        turn = settings.turn
        self.policy = EndOfTurnPolicy.from_settings(turn, settings.vad)
        # With no weight the acoustic model would only cost CPU beside STT and the LLM (and with
        # no text model either, the turn ends by the plain silence timer).
        self.acoustic = acoustic if self.policy.acoustic_weight > 0 else None
        has_text = turn.use_text and hasattr(llm, "end_of_turn_probability")
        self._text_model = llm if has_text else None
        self.speculate, self.clock = turn.speculate, clock
        self.start_silence_ms = min(turn.start_silence_ms, turn.min_silence_ms)
        self.forced: EndpointReason | None = None  # the rule that ended it, when not a timer
        self.probability: float | None = None  # the last fused end-of-turn probability
        self._paused = False
        self._released = False  # the VAD released during the pause (it began before that)
        self._may_end = asyncio.Event()  # the pause's silence is long enough to end the turn
        self._last_audio = clock.now()
        self._receiving = 0  # audio being processed now
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def models_on(self) -> bool:
        return self.acoustic is not None or self._text_model is not None

    @property
    def asks_at_pauses(self) -> bool:
        """Whether a short pause does anything (models to ask or a reply to start)."""
        return self.models_on or self.speculate

    def endpointer_config(self, vad: EndpointerConfig) -> EndpointerConfig:
        """The VAD endpointer's config: its hangover becomes the fallback when models decide."""
        if not self.models_on:
            return vad
        return replace(vad, silence_hangover_ms=self.policy.fallback_silence_ms)

    def observe(self, endpointer: Endpointer) -> Pause | None:
        """After each frame: a pause reached, speech resumed after one, or nothing new.

        The pause counts from the sound's end (:attr:`Endpointer.quiet_ms`), so it may be
        reached while the VAD still hears the last word; it then ends at the next loud frame.
        Once the VAD has released, it ends when the VAD hears speech again."""
        state, quiet_ms = endpointer.state, endpointer.quiet_ms
        if self._paused and state is EndpointState.TRAILING_SILENCE:
            self._released = True
        if self._paused and state is EndpointState.SPEECH and (self._released or not quiet_ms):
            self._paused = False
            self._cancel("judge")
            return Pause.RESUMED
        reached = not self._paused and quiet_ms > 0 and quiet_ms >= self.start_silence_ms
        if reached:
            self._paused = self.asks_at_pauses
            self._released = state is EndpointState.TRAILING_SILENCE
            self._may_end = asyncio.Event()
        if self._paused and self.policy.ready_to_ask(endpointer.silence_ms):
            self._may_end.set()
        return Pause.REACHED if reached and self._paused else None

    def ended(self, end: SpeechEnd) -> Ending:
        """The utterance ``end`` closed ended: how, and forget its pause, watchdog, judgement."""
        reason = self.forced
        if reason is None:
            reason = "max_length" if isinstance(end, UtteranceTooLong) else "fallback_silence"
        idle_ms = self.idle_ms() if reason == "starvation" else 0.0
        ending = Ending(reason, self.probability, idle_ms)
        self._paused, self.forced, self.probability = False, None, None
        self._cancel("judge")
        self._cancel("watch")
        return ending

    # --- the end-of-turn models ---------------------------------------------------------------

    def judge(
        self,
        audio: PcmAudio,
        text_probability: Awaitable[float | None],
        endpointer: Endpointer,
        on_end: OnEnd,
    ) -> None:
        """Ask the models about the pause just reached; ``on_end`` if the policy ends the turn."""
        work = self._judge(audio, text_probability, endpointer, on_end, self._may_end)
        self._start("judge", work)

    async def _judge(
        self,
        audio: PcmAudio,
        text_probability: Awaitable[float | None],
        endpointer: Endpointer,
        on_end: OnEnd,
        may_end: asyncio.Event,
    ) -> None:
        acoustic, text = await asyncio.gather(self._acoustic(audio), text_probability)
        await may_end.wait()  # an answer before ``min_silence_ms`` waits for it (or is cancelled)
        evidence = TurnEvidence(
            silence_ms=endpointer.silence_ms,
            speech_ms=endpointer.speech_ms,
            acoustic=acoustic,
            text=text,
        )
        decision = self.policy.decide(evidence)
        self.probability = decision.probability
        if decision.end and decision.reason is not None and endpointer.in_speech:
            self.forced = decision.reason
            await on_end(decision.reason)

    async def _acoustic(self, audio: PcmAudio) -> float | None:
        if self.acoustic is None or not len(audio.samples):
            return None
        try:
            return round(await self.acoustic.completion_probability(audio), 4)
        except Exception:
            log.exception("the acoustic end-of-turn model failed; deciding without it")
            return None

    async def text_probability(self, messages: Sequence[ChatMessage]) -> float | None:
        """The chat model's P(end of turn) after the user's words so far; None when off."""
        if self._text_model is None:
            return None
        try:
            value = await text_end_of_turn(self._text_model, messages)
        except Exception:
            log.exception("the text end-of-turn probability failed; deciding without it")
            return None
        return None if value is None else round(value, 4)

    # --- a client that stops sending ----------------------------------------------------------

    @contextlib.contextmanager
    def receiving(self) -> Iterator[None]:
        """Around the processing of audio from the client: a slow session (a loaded machine,
        streaming partials) is not a quiet client; the idle time counts from the end of it."""
        self._receiving += 1
        try:
            yield
        finally:
            self._receiving -= 1
            self._last_audio = self.clock.now()

    def idle_ms(self) -> float:
        """Time since the client's last audio was processed (0 while some is)."""
        if self._receiving:
            return 0.0
        return round((self.clock.now() - self._last_audio) * 1000, 1)

    def watch_starvation(self, endpointer: Endpointer, on_end: OnEnd) -> None:
        """End the utterance in progress if the client sends no audio for ``starvation_ms``."""
        if "watch" not in self._tasks:
            self._start("watch", self._watch(endpointer, on_end))

    async def _watch(self, endpointer: Endpointer, on_end: OnEnd) -> None:
        limit_s = self.policy.starvation_ms / 1000
        while endpointer.in_speech:
            idle_ms = self.idle_ms()
            evidence = TurnEvidence(
                silence_ms=endpointer.silence_ms,
                speech_ms=endpointer.speech_ms,
                since_audio_ms=idle_ms,
            )
            if self.policy.decide(evidence).reason == "starvation":
                self.forced = "starvation"
                await on_end("starvation")
                return
            await self.clock.sleep(max(limit_s - idle_ms / 1000, 0.001))

    # --- tasks --------------------------------------------------------------------------------

    def _start(self, name: str, work: Any) -> None:
        self._cancel(name)
        task = asyncio.create_task(work)
        self._tasks[name] = task
        task.add_done_callback(lambda done: self._forget(name, done))

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]
        if not task.cancelled() and task.exception() is not None:
            log.error("turn-taking %s failed", name, exc_info=task.exception())

    def _cancel(self, name: str) -> None:
        """Cancel a task by name, unless it is the one asking (it ends the turn itself)."""
        task = self._tasks.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def close(self) -> None:
        tasks = [t for t in self._tasks.values() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
