"""Server → client events of /ws/chat, as JSON-ready dicts (one function each)."""

from __future__ import annotations

import base64
from typing import Any


def session_started(
    session_id: str, config: dict[str, Any], gpu: dict[str, Any] | None = None
) -> dict[str, Any]:
    event = {
        "type": "session_started",
        "session_id": session_id,
        "input_sample_rate": 16_000,
        "config": config,
    }
    if gpu is not None:  # only on a machine with GPUs: the card the session was seated on
        event["gpu"] = gpu
    return event


def speech(started: bool) -> dict[str, Any]:
    return {"type": "speech_started" if started else "speech_stopped"}


def transcript(
    text: str, *, final: bool, turn_id: str | None = None, language: str | None = None
) -> dict[str, Any]:
    return {
        "type": "transcript",
        "text": text,
        "final": final,
        "turn_id": turn_id,
        "language": language,
    }


def llm_token(token: str, turn_id: str) -> dict[str, Any]:
    return {"type": "llm_token", "token": token, "turn_id": turn_id}


def audio_response(
    pcm: bytes, sample_rate: int, turn_id: str, seq: int, text: str
) -> dict[str, Any]:
    return {
        "type": "audio_response",
        "data": base64.b64encode(pcm).decode("ascii"),
        "sample_rate": sample_rate,
        "format": "pcm_s16le",
        "turn_id": turn_id,
        "seq": seq,
        "text": text,
    }


def turn_end(
    turn_id: str,
    metrics: dict[str, float | None],
    *,
    interrupted: bool,
    text: str,
    tts_mode: str | None,
) -> dict[str, Any]:
    return {
        "type": "turn_end",
        "turn_id": turn_id,
        "metrics": metrics,
        "interrupted": interrupted,
        "text": text,
        "tts_mode": tts_mode,
    }


def interrupted(turn_id: str, heard_text: str, reason: str) -> dict[str, Any]:
    return {"type": "interrupted", "turn_id": turn_id, "heard_text": heard_text, "reason": reason}


def error(code: str, message: str, *, turn_id: str | None = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "turn_id": turn_id}


def pong() -> dict[str, Any]:
    return {"type": "pong"}
