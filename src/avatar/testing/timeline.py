"""Run a voice session in process, on a virtual clock, and read what it said as a timeline.

:class:`TurnHarness` builds a :class:`VoiceSession` over scripted engines (VAD included) and a
:class:`FakeClock`, with a :class:`MemoryRecorder`, and keeps every event with the virtual time
it was emitted at. A test speaks, stays silent, waits and reports playback; each step moves
the clock, so timings (barge-in after 600 ms, voice-to-voice) are exact and the same everywhere:

    async with TurnHarness(settings, llm=ScriptedChat(REPLY), tts=ToneTts()) as h:
        await h.session.submit_text("Tell me a story.")
        await h.until(ReplyAudio)
        await h.speak(1.0)
        cut = await h.until(Interrupted)
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from avatar.audio.pcm import PcmAudio
from avatar.engines.hub import EngineHub
from avatar.pipeline.config import SessionConfig
from avatar.pipeline.events import SessionEvent
from avatar.pipeline.session import VoiceSession
from avatar.pipeline.utterance import FRAME, SAMPLE_RATE_IN
from avatar.settings import Settings
from avatar.testing.clock import FakeClock
from avatar.testing.fakes import MemoryRecorder, ScriptedVad

E = TypeVar("E")
FRAME_S = FRAME / SAMPLE_RATE_IN
SPEECH_LEVEL = 0.9  # a frame's level is its probability for ScriptedVad


class TurnHarness:
    """A :class:`VoiceSession` on a :class:`FakeClock` with scripted engines."""

    def __init__(
        self,
        settings: Settings,
        *,
        stt: Any = None,
        llm: Any = None,
        tts: Any = None,
        turn: Any = None,
        config: SessionConfig | None = None,
        likely_language: str | None = None,
        vad_lag_frames: int = 0,
    ) -> None:
        self.clock = FakeClock()
        if turn is None:  # no acoustic end-of-turn model unless one is given
            no_model = settings.turn.model_copy(update={"engine": ""})
            settings = settings.model_copy(update={"turn": no_model})
        self.hub = EngineHub(settings)
        for slot, engine in (("stt", stt), ("llm", llm), ("tts.fast", tts), ("turn", turn)):
            if engine is not None:
                engine.clock = self.clock  # scripted engines wait on the virtual clock
                self.hub.override(slot, engine)
        self.recorder = MemoryRecorder()
        self.timeline: list[tuple[float, SessionEvent]] = []
        self._cursor = 0
        self.session = VoiceSession(
            self.hub,
            "timeline",
            self._collect,
            config=config or SessionConfig(tts_mode="fast"),
            recorder=self.recorder,
            clock=self.clock,
            new_vad=lambda: ScriptedVad(hold_frames=vad_lag_frames),
            likely_language=likely_language,
        )

    async def __aenter__(self) -> TurnHarness:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.session.close()
        self.hub.close()

    async def _collect(self, event: SessionEvent) -> None:
        self.timeline.append((self.clock.now(), event))

    @property
    def events(self) -> list[SessionEvent]:
        return [event for _, event in self.timeline]

    def of(self, kind: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, kind)]

    def time_of(self, event: SessionEvent) -> float:
        """The virtual time ``event`` was emitted at."""
        return next(t for t, e in self.timeline if e is event)

    # --- the user's side ----------------------------------------------------------------------

    async def speak(self, seconds: float, *, level: float = SPEECH_LEVEL) -> None:
        """Stream ``seconds`` of audio in real time (32 ms frames), as a microphone would."""
        frame = np.full(FRAME, level, dtype=np.float32)
        for _ in range(round(seconds / FRAME_S)):
            await self.session.feed_audio(PcmAudio(frame, SAMPLE_RATE_IN))
            await self.clock.advance(FRAME_S)

    async def silence(self, seconds: float) -> None:
        """Stream ``seconds`` of silence."""
        await self.speak(seconds, level=0.0)

    async def wait(self, seconds: float) -> None:
        """Let time pass with no audio sent (a client that sends nothing)."""
        await self.clock.advance(seconds)

    async def until(
        self,
        kind: type[E],
        where: Callable[[E], bool] = lambda _: True,
        *,
        limit_s: float = 60.0,
        step_s: float = 0.01,
    ) -> E:
        """The next event (after the last one ``until`` returned) of ``kind`` matching ``where``,
        letting time pass without audio until it comes; fails after ``limit_s`` of virtual time.
        """
        waited = 0.0
        while True:
            for index in range(self._cursor, len(self.timeline)):
                event = self.timeline[index][1]
                if isinstance(event, kind) and where(event):
                    self._cursor = index + 1
                    return event
            if waited >= limit_s:
                seen = [type(e).__name__ for e in self.events]
                raise AssertionError(f"no {kind.__name__} within {limit_s} s; saw {seen}")
            await self.clock.advance(step_s)
            waited += step_s
