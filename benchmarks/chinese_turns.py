"""Real Mandarin recordings through a real VoiceSession: transcript, reply language and script.

Streams the shared recordings (and concatenations of them, up to 12 s) as a microphone would,
in an auto-language session and a zh-TW one, and prints each turn's transcript, its CER against
the reference, and whether the reply is mostly Chinese (and Traditional in zh-TW). From the
repository root (the recordings are in ../shared/audio/zh):

    PYTHONPATH=src .venv/bin/python benchmarks/chinese_turns.py
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from avatar.api.ws.protocol import AudioIn, ConfigMsg  # noqa: E402
from avatar.audio.pcm import PcmAudio  # noqa: E402
from avatar.engines.hub import EngineHub  # noqa: E402
from avatar.models.store import ModelStore  # noqa: E402
from avatar.pipeline.session import VoiceSession  # noqa: E402
from avatar.settings import default_cache_dir, load_settings  # noqa: E402
from test_chinese import REFERENCE, ZH, cer, mostly_chinese, simplified_only  # noqa: E402


def speech(name: str) -> np.ndarray:
    samples = PcmAudio.from_s16le((ZH / f"{name}.wav").read_bytes()[44:], 16_000).samples
    voiced = np.nonzero(np.abs(samples) > 0.02)[0]
    return samples[voiced[0] : voiced[-1] + 1]


def utterance(names: list[str]) -> bytes:
    gap, lead, tail = (np.zeros(int(s * 16_000), np.float32) for s in (0.25, 0.3, 1.5))
    parts = [lead]
    for name in names:
        parts += [speech(name), gap]
    return PcmAudio(np.concatenate([*parts[:-1], tail]), 16_000).to_s16le()


async def turn(hub: EngineHub, names: list[str], language: str) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def send(event: dict[str, Any]) -> None:
        events.append(event)
        if event["type"] in ("turn_end", "error"):
            done.set()

    session = VoiceSession(hub, "bench", send)
    await session.handle(ConfigMsg(type="config", language=language))
    pcm = utterance(names)
    for i in range(0, len(pcm), 3200):
        await session.handle(AudioIn(pcm[i : i + 3200]))
    await done.wait()
    await session.close()
    final = next((e["text"] for e in events if e["type"] == "transcript"), "")
    reply = "".join(e["token"] for e in events if e["type"] == "llm_token")
    return {
        "transcript": final,
        "reply": reply,
        "audio": any(e["type"] == "audio_response" for e in events),
    }


async def main() -> None:
    hub = EngineHub(load_settings(data_dir="/tmp/avatar-bench-zh"), ModelStore(default_cache_dir()))
    cases = [
        ["welcome"],
        ["hope"],
        ["welcome", "hope"],
        ["hope", "welcome"],
        ["welcome", "hope", "welcome"],
    ]
    chinese = total = 0
    try:
        for language in ("auto", "zh-TW"):
            for names in cases:
                result = await turn(hub, names, language)
                said = "".join(REFERENCE[n] for n in names)
                ok = mostly_chinese(result["reply"]) and (
                    language == "auto"
                    or not simplified_only(result["transcript"] + result["reply"])
                )
                chinese, total = chinese + ok, total + 1
                print(
                    f"{language:5} {'+'.join(names):20} CER {cer(result['transcript'], said):.2f}"
                    f" reply-ok {ok} audio {result['audio']} | {result['transcript'][:40]}"
                    f" -> {result['reply'][:40]!r}",
                    flush=True,
                )
        print(f"replies mostly Chinese (Traditional in zh-TW): {chinese}/{total}")
    finally:
        hub.close()


if __name__ == "__main__":
    asyncio.run(main())
