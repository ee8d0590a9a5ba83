"""The /ws/chat codec in process: client messages parse into the typed union (or a coded
error), reach the session's typed inputs, and session events encode as docs/PROTOCOL.md shows."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from avatar.api.ws.codec import encode
from avatar.api.ws.protocol import MAX_AUDIO_BYTES, ProtocolError, deliver, parse_binary, parse_text
from avatar.pipeline.config import ConfigChange
from avatar.pipeline.events import (
    ConfigChanged,
    Error,
    Interrupted,
    InterruptReason,
    Pong,
    PublicConfig,
    ReplyAudio,
    ReplyText,
    SessionEvent,
    SessionStarted,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    TurnEnd,
)

PROTOCOL = Path(__file__).parents[1] / "docs" / "PROTOCOL.md"
CONFIG = PublicConfig(language="auto", tts_mode="auto", voice_profile_id=None, hands_free=True)
EXAMPLES: list[SessionEvent] = [
    SessionStarted("3f9c", CONFIG),
    SpeechStarted(),
    SpeechStopped(),
    Transcript("What is the capital of France?", final=True, turn_id="a1b2", language="en"),
    ReplyText(" Paris", "a1b2"),
    ReplyAudio(b"\x01\x00\x02\x00", 22_050, "a1b2", 0, "The capital of France is Paris."),
    TurnEnd("a1b2", {"stt_ms": 650.1}, False, "The capital of France is Paris.", "fast"),
    Interrupted("a1b2", "Once upon", InterruptReason.BARGE_IN),
    Error("bad_audio", "audio_chunk data is not valid base64"),
]


def documented_server_messages() -> dict[str, dict[str, Any]]:
    text = PROTOCOL.read_text(encoding="utf-8")
    block = text.split("## Server → client", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    messages = [json.loads(line) for line in block.splitlines() if line.strip()]
    return {m["type"]: m for m in messages}


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_events_encode_with_the_documented_fields(event: SessionEvent) -> None:
    wire = encode(event)
    documented = documented_server_messages()[wire["type"]]
    assert set(wire) == set(documented)
    if "config" in wire:
        assert set(wire["config"]) == set(documented["config"])
    json.dumps(wire)  # JSON-ready


def test_reply_audio_is_base64_pcm_and_the_rest_keeps_its_values() -> None:
    audio = encode(EXAMPLES[5])
    assert base64.b64decode(audio["data"]) == b"\x01\x00\x02\x00" and audio["seq"] == 0
    assert encode(EXAMPLES[7])["reason"] == "barge_in"
    assert encode(ConfigChanged(CONFIG)) == {
        "type": "config",
        "language": "auto",
        "tts_mode": "auto",
        "voice_profile_id": None,
        "hands_free": True,
    }
    assert encode(Pong()) == {"type": "pong"}
    gpu = encode(SessionStarted("s", CONFIG, gpu_index=1, gpu_reason="fewest sessions"))
    assert gpu["gpu"] == {"index": 1, "reason": "fewest sessions"}
    assert "gpu" not in encode(EXAMPLES[0])


def documented_client_messages() -> list[dict[str, Any]]:
    text = PROTOCOL.read_text(encoding="utf-8")
    table = text.split("## Client → server", 1)[1].split("## Server → client", 1)[0]
    found = re.findall(r"`(\{\"type\":.*?\})`", table)
    # a documented choice ("fast"\|"hq"\|"auto", "en"\|"zh"\|…) stands for its first value
    examples = [re.sub(r'("[^"]*")(?:\\\|(?:"[^"]*"|…))+', r"\1", m) for m in found]
    messages = [json.loads(m.replace('"<base64 PCM>"', '""').replace("…", "x")) for m in examples]
    return [m for m in messages if m["type"] != "pong"]  # the answer to ping


class Inputs:
    """Records which typed input each message reached."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        async def record(*args: Any) -> None:
            self.calls.append((name, args))

        return record


async def test_every_documented_client_message_reaches_its_typed_input() -> None:
    inputs = Inputs()
    messages = documented_client_messages()
    assert len(messages) == 7
    for message in messages:
        if message["type"] == "audio_chunk":
            message["data"] = base64.b64encode(b"\0\0" * 4).decode()
        await deliver(inputs, parse_text(json.dumps(message)))  # type: ignore[arg-type]
    await deliver(inputs, parse_binary(b"\0\0" * 8))  # type: ignore[arg-type]
    names = [name for name, _ in inputs.calls]
    assert names == [
        "feed_audio",
        "configure",
        "end_utterance",
        "submit_text",
        "interrupt",
        "report_playback",
        "ping",
        "feed_audio",
    ]
    config = inputs.calls[1][1][0]
    assert config == ConfigChange(
        language="auto",
        tts_mode="fast",
        voice_profile_id="x",
        system_prompt="x",
        hands_free=True,
        chinese_script="traditional",
    )
    assert inputs.calls[4][1] == (InterruptReason.CLIENT,)
    assert len(inputs.calls[7][1][0].samples) == 8


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "bad_json"),
        ('["a list"]', "bad_message"),
        ('{"type": 3}', "bad_message"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"type": "audio_chunk"}', "bad_audio"),
        ('{"type": "audio_chunk", "data": 12}', "bad_audio"),
        ('{"type": "audio_chunk", "data": "%%%not-base64"}', "bad_audio"),
        ('{"type": "audio_chunk", "data": "AAEC"}', "bad_audio_format"),
        (json.dumps({"type": "audio_chunk", "data": "A" * 100_000}), "audio_too_large"),
        ('{"type": "config", "tts_mode": "ultra"}', "invalid_message"),
        ('{"type": "config", "language": "<script>"}', "invalid_message"),
        ('{"type": "text", "text": ""}', "invalid_message"),
        ('{"type": "playback", "turn_id": "t", "played_ms": -1}', "invalid_message"),
        (json.dumps({"type": "text", "text": "x" * 300_000}), "message_too_large"),
    ],
)
def test_bad_messages_get_their_error_code(raw: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_text(raw)
    assert info.value.code == code and info.value.message


@pytest.mark.parametrize(
    ("data", "code"),
    [(b"\0", "bad_audio_format"), (b"\0" * (MAX_AUDIO_BYTES + 2), "audio_too_large")],
)
def test_bad_binary_frames_get_their_error_code(data: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_binary(data)
    assert info.value.code == code


def test_invalid_field_errors_name_the_message_and_field() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_text('{"type": "config", "tts_mode": "ultra"}')
    assert info.value.message.startswith("config: tts_mode: ")
