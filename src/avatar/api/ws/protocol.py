"""The /ws/chat wire protocol: client messages parsed into typed records, server events out.

Client → server (JSON text frames, or binary frames of raw PCM s16le mono 16 kHz):
``audio_chunk`` (original AVATAR), ``config``, ``end_of_utterance``, ``text``, ``interrupt``,
``playback``, ``ping``. Server → client: see :mod:`avatar.api.ws.events`. docs/PROTOCOL.md has
examples of every message.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_TEXT_FRAME = 256 * 1024  # bytes of one JSON message
MAX_AUDIO_BYTES = 64 * 1024  # bytes of PCM in one frame (2 s at 16 kHz)
SAMPLE_RATE_IN = 16_000


class ProtocolError(Exception):
    """A message the server cannot use; reported as an ``error`` event, the session goes on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore", str_max_length=20_000)


class ConfigMsg(_Msg):
    type: Literal["config"]
    language: str | None = Field(None, pattern=r"^(auto|[a-z]{2,3}(-[A-Za-z]{2,4})?)$")
    voice_profile_id: str | None = Field(None, max_length=64)
    tts_mode: Literal["fast", "hq", "auto"] | None = None
    system_prompt: str | None = Field(None, max_length=4000)
    hands_free: bool | None = None  # False: push-to-talk (end_of_utterance ends a turn)


class TextMsg(_Msg):
    type: Literal["text"]
    text: str = Field(..., min_length=1, max_length=4000)


class PlaybackMsg(_Msg):
    type: Literal["playback"]
    turn_id: str = Field(..., max_length=64)
    played_ms: float = Field(..., ge=0, le=3_600_000)


@dataclass(frozen=True, slots=True)
class AudioIn:
    pcm: bytes


@dataclass(frozen=True, slots=True)
class Simple:
    type: Literal["end_of_utterance", "interrupt", "ping"]


ClientMessage = AudioIn | ConfigMsg | TextMsg | PlaybackMsg | Simple

_MODELS: dict[str, type[_Msg]] = {"config": ConfigMsg, "text": TextMsg, "playback": PlaybackMsg}


def parse_binary(data: bytes) -> AudioIn:
    return AudioIn(_check_pcm(data))


def parse_text(raw: str) -> ClientMessage:
    if len(raw) > MAX_TEXT_FRAME:
        raise ProtocolError("message_too_large", f"messages are limited to {MAX_TEXT_FRAME} bytes")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError("bad_json", "the message is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError("bad_message", 'a message is a JSON object with a string "type"')
    kind = data["type"]
    if kind == "audio_chunk":
        return _audio_chunk(data)
    if kind in ("end_of_utterance", "interrupt", "ping"):
        return Simple(kind)
    model = _MODELS.get(kind)
    if model is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}")
    try:
        return model.model_validate(data)  # type: ignore[return-value]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProtocolError("invalid_message", f"{kind}: {where}: {first['msg']}") from None


def _audio_chunk(data: dict[str, Any]) -> AudioIn:
    payload = data.get("data")
    if not isinstance(payload, str):
        raise ProtocolError("bad_audio", 'audio_chunk needs base64 PCM in "data"')
    if len(payload) > MAX_AUDIO_BYTES * 4 // 3 + 4:
        raise ProtocolError("audio_too_large", f"one chunk holds at most {MAX_AUDIO_BYTES} bytes")
    try:
        pcm = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("bad_audio", "audio_chunk data is not valid base64") from None
    return AudioIn(_check_pcm(pcm))


def _check_pcm(pcm: bytes) -> bytes:
    if len(pcm) > MAX_AUDIO_BYTES:
        raise ProtocolError("audio_too_large", f"one chunk holds at most {MAX_AUDIO_BYTES} bytes")
    if len(pcm) % 2:
        raise ProtocolError(
            "bad_audio_format", "audio must be PCM s16le mono 16 kHz (an even number of bytes)"
        )
    return pcm
