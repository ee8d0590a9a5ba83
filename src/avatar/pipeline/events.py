"""What a voice session says, as typed, protocol-neutral events.

A :class:`avatar.pipeline.session.VoiceSession` reports everything through one ``Emit``
callback taking a :data:`SessionEvent`; the transport (``avatar.api.ws.codec``) turns them into
wire messages. Events hold plain values (PCM bytes, not base64), so tests read them directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class ClientGone(Exception):
    """Raised by an ``Emit`` whose client left or stopped reading: the session stops talking."""


class InterruptReason(StrEnum):
    """Why a reply was cut off."""

    BARGE_IN = "barge_in"  # the user talked over it (longer than a backchannel)
    CLIENT = "client"  # the client asked (``interrupt``)
    NEW_TURN = "new_turn"  # a new turn started (typed text, push-to-talk)
    CLOSED = "closed"  # the session ended

    @property
    def by_user(self) -> bool:
        """The user stopped the reply (so audio still playing at the client is cut too)."""
        return self in (InterruptReason.BARGE_IN, InterruptReason.CLIENT)


@dataclass(frozen=True, slots=True)
class PublicConfig:
    """The session settings a client sees (``config`` and ``session_started``)."""

    language: str  # "auto": detect from speech
    tts_mode: str
    voice_profile_id: str | None
    hands_free: bool


@dataclass(frozen=True, slots=True)
class SessionStarted:
    session_id: str
    config: PublicConfig
    input_sample_rate: int = 16_000
    gpu_index: int | None = None  # the card the session was seated on (GPU machines only)
    gpu_reason: str | None = None


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The endpointer confirmed user speech."""


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """The user's speech ended (hands-free)."""


class ResumeReason(StrEnum):
    """Why a quieted reply carries on."""

    BACKCHANNEL = "backchannel"  # short speech ("uh-huh") that does not take the turn
    NOISE = "noise"  # a voiced blip too short to be speech
    ECHO = "echo"  # too many false alarms in this reply: AVATAR hears itself; no more quieting
    REPLY_ENDED = "reply_ended"  # the reply finished playing while the user spoke


@dataclass(frozen=True, slots=True)
class ReplyQuieted:
    """Voice began over an audible reply: the client ducks its playback at once
    (``reply_quiet`` on the wire). ``Interrupted`` or ``ReplyResumed`` follows for the turn."""

    turn_id: str


@dataclass(frozen=True, slots=True)
class ReplyResumed:
    """The voice that quieted the reply did not take the turn: play on (``reply_resume``)."""

    turn_id: str
    reason: ResumeReason


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    final: bool
    turn_id: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class ReplyText:
    """A piece of the reply text as the LLM streams it (``llm_token`` on the wire)."""

    token: str
    turn_id: str


@dataclass(frozen=True, slots=True)
class ReplyAudio:
    """A piece of reply audio (``audio_response`` on the wire): PCM s16le mono."""

    pcm: bytes
    sample_rate: int
    turn_id: str
    seq: int
    text: str

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


@dataclass(frozen=True, slots=True)
class Interrupted:
    turn_id: str
    heard_text: str
    reason: InterruptReason


@dataclass(frozen=True, slots=True)
class TurnEnd:
    turn_id: str
    metrics: Mapping[str, float | str | None]
    interrupted: bool
    text: str
    tts_mode: str | None


@dataclass(frozen=True, slots=True)
class Error:
    code: str
    message: str
    turn_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConfigChanged:
    config: PublicConfig


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to ``ping``."""


SessionEvent = (
    SessionStarted
    | SpeechStarted
    | SpeechStopped
    | ReplyQuieted
    | ReplyResumed
    | Transcript
    | ReplyText
    | ReplyAudio
    | Interrupted
    | TurnEnd
    | Error
    | ConfigChanged
    | Pong
)
Emit = Callable[[SessionEvent], Awaitable[None]]
