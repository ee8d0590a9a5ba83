"""What a voice session needs from outside the pipeline: storage and voices (ports)."""

from __future__ import annotations

from typing import Protocol

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import VoiceRef
from avatar.pipeline.events import ClientGone
from avatar.pipeline.turn import Turn


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
