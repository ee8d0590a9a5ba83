"""The /ws/chat wire protocol, client side: messages parsed into one discriminated union.

Client → server (JSON text frames, or binary frames of raw PCM s16le mono 16 kHz):
``audio_chunk`` (original AVATAR), ``config``, ``end_of_utterance``, ``text``, ``interrupt``,
``playback``, ``ping``. Server → client: see :mod:`avatar.api.ws.codec`. docs/PROTOCOL.md has
examples of every message. :func:`deliver` hands a parsed message to the session's typed input.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from avatar.audio.pcm import PcmAudio
from avatar.pipeline.config import ConfigChange
from avatar.pipeline.events import InterruptReason
from avatar.pipeline.session import VoiceSession
from avatar.pipeline.utterance import SAMPLE_RATE_IN

__all__ = ["SAMPLE_RATE_IN", "ClientMessage", "ProtocolError", "deliver", "parse_text"]

MAX_TEXT_FRAME = 256 * 1024  # bytes of one JSON message
MAX_AUDIO_BYTES = 64 * 1024  # bytes of PCM in one frame (2 s at 16 kHz)
_AUDIO_CODES = ("bad_audio", "bad_audio_format", "audio_too_large")


class ProtocolError(Exception):
    """A message the server cannot use; reported as an ``error`` event, the session goes on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore", str_max_length=20_000, frozen=True)


class AudioMsg(_Msg):
    """PCM s16le mono 16 kHz: a binary frame, or ``audio_chunk`` with base64 ``data``."""

    type: Literal["audio_chunk"]
    pcm: bytes = Field(None, validation_alias="data", validate_default=True)  # missing: bad_audio

    @field_validator("pcm", mode="before")
    @classmethod
    def _decode(cls, data: Any) -> bytes:
        if isinstance(data, bytes):  # a binary frame
            return _check_pcm(data)
        if not isinstance(data, str):
            raise PydanticCustomError("bad_audio", 'audio_chunk needs base64 PCM in "data"')
        if len(data) > MAX_AUDIO_BYTES * 4 // 3 + 4:
            raise _too_large()
        try:
            pcm = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise PydanticCustomError("bad_audio", "audio_chunk data is not valid base64") from None
        return _check_pcm(pcm)


class ConfigMsg(_Msg):
    type: Literal["config"]
    language: str | None = Field(None, pattern=r"^(auto|[a-z]{2,3}(-[A-Za-z]{2,4})?)$")
    voice_profile_id: str | None = Field(None, max_length=64)
    tts_mode: Literal["fast", "hq", "auto"] | None = None
    system_prompt: str | None = Field(None, max_length=4000)
    hands_free: bool | None = None  # False: push-to-talk (end_of_utterance ends a turn)
    chinese_script: Literal["traditional", "simplified"] | None = None


class TextMsg(_Msg):
    type: Literal["text"]
    text: str = Field(..., min_length=1, max_length=4000)


class PlaybackMsg(_Msg):
    type: Literal["playback"]
    turn_id: str = Field(..., max_length=64)
    played_ms: float = Field(..., ge=0, le=3_600_000)


class EndOfUtteranceMsg(_Msg):
    type: Literal["end_of_utterance"]


class InterruptMsg(_Msg):
    type: Literal["interrupt"]


class PingMsg(_Msg):
    type: Literal["ping"]


ClientMessage = Annotated[
    AudioMsg | ConfigMsg | TextMsg | PlaybackMsg | EndOfUtteranceMsg | InterruptMsg | PingMsg,
    Field(discriminator="type"),
]
_CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


def parse_binary(data: bytes) -> AudioMsg:
    try:
        return AudioMsg.model_validate({"type": "audio_chunk", "data": data})
    except ValidationError as exc:
        raise _protocol_error("audio_chunk", exc) from None


def parse_text(raw: str) -> ClientMessage:
    if len(raw) > MAX_TEXT_FRAME:
        raise ProtocolError("message_too_large", f"messages are limited to {MAX_TEXT_FRAME} bytes")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError("bad_json", "the message is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError("bad_message", 'a message is a JSON object with a string "type"')
    try:
        return _CLIENT_MESSAGE.validate_python(data)
    except ValidationError as exc:
        raise _protocol_error(data["type"], exc) from None


def _protocol_error(kind: str, exc: ValidationError) -> ProtocolError:
    first = exc.errors()[0]
    if first["type"] == "union_tag_invalid":
        return ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}")
    if first["type"] in _AUDIO_CODES:
        return ProtocolError(first["type"], first["msg"])
    where = ".".join(str(p) for p in first["loc"][1:])  # [0] is the union's tag
    return ProtocolError("invalid_message", f"{kind}: {where}: {first['msg']}")


def _too_large() -> PydanticCustomError:
    return PydanticCustomError(
        "audio_too_large", "one chunk holds at most {limit} bytes", {"limit": MAX_AUDIO_BYTES}
    )


def _check_pcm(pcm: bytes) -> bytes:
    if len(pcm) > MAX_AUDIO_BYTES:
        raise _too_large()
    if len(pcm) % 2:
        raise PydanticCustomError(
            "bad_audio_format", "audio must be PCM s16le mono 16 kHz (an even number of bytes)"
        )
    return pcm


async def deliver(session: VoiceSession, msg: ClientMessage) -> None:
    """Hand one parsed message to the session's typed input."""
    match msg:
        case AudioMsg(pcm=pcm):
            await session.feed_audio(PcmAudio.from_s16le(pcm, SAMPLE_RATE_IN))
        case ConfigMsg():
            await session.configure(ConfigChange(**msg.model_dump(exclude={"type"})))
        case TextMsg(text=text):
            await session.submit_text(text)
        case PlaybackMsg(turn_id=turn_id, played_ms=played_ms):
            await session.report_playback(turn_id, played_ms)
        case InterruptMsg():
            await session.interrupt(InterruptReason.CLIENT)
        case EndOfUtteranceMsg():
            await session.end_utterance()
        case PingMsg():
            await session.ping()
