"""Server → client: session events encoded as the /ws/chat JSON messages (docs/PROTOCOL.md).

The only place that knows the wire names (``llm_token``, ``audio_response``, …) and the only
place that base64-encodes reply audio.
"""

from __future__ import annotations

import base64
from dataclasses import asdict
from typing import Any

from avatar.pipeline.events import (
    ConfigChanged,
    Error,
    Interrupted,
    Pong,
    PublicConfig,
    ReplyAudio,
    ReplyQuieted,
    ReplyResumed,
    ReplyText,
    SessionEvent,
    SessionStarted,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    TurnEnd,
)

Wire = dict[str, Any]


def encode(event: SessionEvent) -> Wire:
    """The JSON-ready message for ``event``."""
    match event:
        case SessionStarted():
            return _session_started(event)
        case SpeechStarted():
            return {"type": "speech_started"}
        case SpeechStopped():
            return {"type": "speech_stopped"}
        case ReplyQuieted(turn_id=turn_id):
            return {"type": "reply_quiet", "turn_id": turn_id}
        case ReplyResumed(turn_id=turn_id, reason=reason):
            return {"type": "reply_resume", "turn_id": turn_id, "reason": reason.value}
        case Transcript(text=text, final=final, turn_id=turn_id, language=language):
            return {
                "type": "transcript",
                "text": text,
                "final": final,
                "turn_id": turn_id,
                "language": language,
            }
        case ReplyText(token=token, turn_id=turn_id):
            return {"type": "llm_token", "token": token, "turn_id": turn_id}
        case ReplyAudio():
            return _audio_response(event)
        case Interrupted(turn_id=turn_id, heard_text=heard, reason=reason):
            return {
                "type": "interrupted",
                "turn_id": turn_id,
                "heard_text": heard,
                "reason": reason.value,
            }
        case TurnEnd():
            return _turn_end(event)
        case Error(code=code, message=message, turn_id=turn_id):
            return {"type": "error", "code": code, "message": message, "turn_id": turn_id}
        case ConfigChanged(config=config):
            return {"type": "config", **_config(config)}
        case Pong():
            return {"type": "pong"}
    raise TypeError(f"not a session event: {event!r}")


def _config(config: PublicConfig) -> Wire:
    return asdict(config)


def _session_started(event: SessionStarted) -> Wire:
    wire: Wire = {
        "type": "session_started",
        "session_id": event.session_id,
        "input_sample_rate": event.input_sample_rate,
        "config": _config(event.config),
    }
    if event.gpu_index is not None:  # only on a machine with GPUs: the card the session sits on
        wire["gpu"] = {"index": event.gpu_index, "reason": event.gpu_reason}
    return wire


def _audio_response(event: ReplyAudio) -> Wire:
    return {
        "type": "audio_response",
        "data": base64.b64encode(event.pcm).decode("ascii"),
        "sample_rate": event.sample_rate,
        "format": "pcm_s16le",
        "turn_id": event.turn_id,
        "seq": event.seq,
        "text": event.text,
    }


def _turn_end(event: TurnEnd) -> Wire:
    return {
        "type": "turn_end",
        "turn_id": event.turn_id,
        "metrics": dict(event.metrics),
        "interrupted": event.interrupted,
        "text": event.text,
        "tts_mode": event.tts_mode,
    }
