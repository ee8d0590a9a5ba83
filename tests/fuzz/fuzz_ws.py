"""Fuzz target: the /ws/chat parsers must return a message or raise ProtocolError.

The first byte picks the frame kind (even: binary PCM, odd: a UTF-8 text frame, decoded with
replacement as the WebSocket layer only passes valid UTF-8). Run by hand::

    python tests/fuzz/fuzz_ws.py /tmp/corpus-ws -max_total_time=600
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["avatar"]):
    from avatar.api.ws.protocol import ProtocolError, parse_binary, parse_text


def test_one_input(data: bytes) -> None:
    if not data:
        return
    try:
        if data[0] % 2 == 0:
            parse_binary(data[1:])
        else:
            parse_text(data[1:].decode("utf-8", errors="replace"))
    except ProtocolError:
        pass


MESSAGES = [
    {"type": "audio_chunk", "data": "AAABAAIAAwA=", "session_id": "s1"},
    {"type": "config", "language": "en", "tts_mode": "fast", "hands_free": True},
    {"type": "config", "voice_profile_id": "abc", "system_prompt": "Be brief."},
    {"type": "text", "text": "What is the capital of France?"},
    {"type": "playback", "turn_id": "t1", "played_ms": 1234.5},
    {"type": "end_of_utterance"},
    {"type": "interrupt"},
    {"type": "ping"},
]


def seeds() -> dict[str, bytes]:
    out = {f"text-{i}": b"\x01" + json.dumps(m).encode() for i, m in enumerate(MESSAGES)}
    out["binary"] = b"\x00" + bytes(range(256)) * 4
    out["deep"] = b"\x01" + b"[" * 2000
    return out


def main() -> None:
    corpus = next((Path(a) for a in sys.argv[1:] if not a.startswith("-")), None)
    if corpus is not None and corpus.is_dir() and not any(corpus.iterdir()):
        for name, data in seeds().items():
            (corpus / f"seed-{name}").write_bytes(data)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
