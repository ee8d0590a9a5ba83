"""A small /ws/chat client for tests: stream PCM, collect events until a condition."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import websockets

from avatar.audio.pcm import PcmAudio
from avatar.audio.resample import resample

CHUNK_MS = 100


def to_pcm16k(audio: PcmAudio) -> bytes:
    return (audio if audio.sample_rate == 16_000 else resample(audio, 16_000)).to_s16le()


def silence(seconds: float) -> bytes:
    return PcmAudio.silence(seconds, 16_000).to_s16le()


def noise(seconds: float, level: float = 0.05, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    samples = (rng.standard_normal(int(seconds * 16_000)) * level).astype(np.float32)
    return PcmAudio(samples, 16_000).to_s16le()


class ChatClient:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def stream(self, pcm: bytes, *, realtime: float = 0.0, binary: bool = False) -> None:
        """Send PCM in 100 ms chunks; ``realtime`` 1.0 paces at real time, 0 as fast as possible."""
        step = 16_000 * 2 * CHUNK_MS // 1000
        for i in range(0, len(pcm), step):
            chunk = pcm[i : i + step]
            if binary:
                await self.ws.send(chunk)
            else:
                await self.send_json(
                    {
                        "type": "audio_chunk",
                        "session_id": "t",
                        "data": base64.b64encode(chunk).decode(),
                    }
                )
            if realtime:
                await asyncio.sleep(CHUNK_MS / 1000 * realtime)
            else:
                await asyncio.sleep(0)

    async def until(
        self, done: Callable[[dict[str, Any]], bool], limit_s: float = 120.0
    ) -> dict[str, Any]:
        async with asyncio.timeout(limit_s):
            while True:
                event = json.loads(await self.ws.recv())
                self.events.append(event)
                if done(event):
                    return event

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


def connect(server: Any, **kwargs: Any) -> Any:
    headers = kwargs.pop("headers", server.auth)
    return websockets.connect(
        f"{server.ws_url}/ws/chat", additional_headers=headers, max_size=1 << 22, **kwargs
    )
