"""System use cases: machine info, model status, preload and warmup with timings."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import platform
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import psutil

from avatar import __version__
from avatar.audio.pcm import PcmAudio
from avatar.engines.base import ChatMessage, GenerationOptions
from avatar.engines.hub import EngineHub
from avatar.errors import AvatarError
from avatar.system.gpus import gpu_readings

_STARTED = time.time()
_VERSIONS = (
    "fastapi",
    "faster-whisper",
    "llama-cpp-python",
    "piper-tts",
    "onnxruntime",
    "ctranslate2",
    "sqlalchemy",
    "torch",
)

log = logging.getLogger(__name__)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    mem = psutil.virtual_memory()
    return {
        "avatar_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": {
            "model": platform.processor() or platform.machine(),
            "logical_cores": psutil.cpu_count(),
            "load_pct": psutil.cpu_percent(None),
        },
        "memory": {
            "total_mb": round(mem.total / 2**20),
            "available_mb": round(mem.available / 2**20),
            "process_rss_mb": round(psutil.Process(os.getpid()).memory_info().rss / 2**20),
        },
        "gpus": [asdict(g) for g in gpu_readings()],
        "versions": {p: v for p in _VERSIONS if (v := _version(p))},
        "uptime_s": round(time.time() - _STARTED, 1),
    }


def models_status(hub: EngineHub) -> dict[str, Any]:
    slots = {}
    placed = {p.slot: asdict(p) for p in hub.placement.placements}
    for slot, state in hub.states.items():
        slots[slot] = {
            **asdict(state),
            "configured": bool(state.engine),
            "loaded": hub.is_loaded(slot),
            "placement": placed.get(slot),
        }
        slots[slot].pop("extra", None)
    return {
        "slots": slots,
        "tts_modes": hub.tts_modes.status(),
        "default_tts_mode": hub.settings.tts.mode,
    }


async def preload(hub: EngineHub) -> dict[str, Any]:
    start = time.perf_counter()
    states = await asyncio.to_thread(hub.preload)
    return {
        "took_s": round(time.perf_counter() - start, 3),
        "slots": [
            {
                "slot": s.slot,
                "engine": s.engine,
                "loaded": hub.is_loaded(s.slot),
                "load_s": s.load_s,
                "error": s.error,
            }
            for s in states
        ],
    }


async def warmup(hub: EngineHub) -> dict[str, Any]:
    """Run one tiny inference through every configured engine and time it."""
    t = np.arange(16_000, dtype=np.float32) / 16_000
    tone = PcmAudio((0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16_000)
    steps: dict[str, Any] = {
        "stt": lambda: hub.stt.transcribe(tone, language="en"),
        "llm": lambda: _first_token(hub),
        "tts.fast": lambda: _first_audio(hub, "fast"),
        "speaker": lambda: hub.speaker.embed(tone.concat(tone)),
    }
    results = []
    start = time.perf_counter()
    for slot, run in steps.items():
        t0 = time.perf_counter()
        try:
            await run()
            took = time.perf_counter() - t0
            hub.observe_latency(slot, took)
            results.append({"slot": slot, "ok": True, "took_ms": round(took * 1000, 1)})
        except AvatarError as exc:
            results.append({"slot": slot, "ok": False, "error": str(exc), "code": exc.code})
    return {"took_s": round(time.perf_counter() - start, 3), "steps": results}


# What the start-up warm-up says and hears, by the language the server expects first.
_FIRST_WORDS = {"en": "Hello, what time is it?", "zh": "你好，现在几点了？"}


async def warm_first_turn(hub: EngineHub) -> dict[str, Any]:
    """Take the engines once through a spoken turn, so the first question is answered as fast
    as the ones after it: the voice speaks a question and Whisper hears it (the trimmed path),
    the chat model reads it for the end of turn and starts a voice reply, then reads the system
    prompt ahead as a session's first turn will need it. On the 2-core VM the first question
    after start took 811-958 ms voice to voice without this and 690-748 ms with it (later
    questions 540-700 ms; docs/BENCHMARKS.md, round 7). Failures are logged, never raised: a
    server whose warm-up failed still serves."""
    from avatar.audio.resample import resample
    from avatar.engines.base import read_ahead, text_end_of_turn
    from avatar.engines.cpu_turns import CpuTurns
    from avatar.pipeline.context import ConversationContext
    from avatar.services.speech import say

    language = (hub.settings.stt.language or "en").split("-")[0]
    words = _FIRST_WORDS.get(language, _FIRST_WORDS["en"])
    llm = hub.settings.llm
    start = time.perf_counter()
    try:
        context = ConversationContext(
            llm.system_prompt, llm.context_tokens // 2, hub.llm.count_tokens
        )
        context.language = language
        spoken = await say(hub, words, language=language)
        await hub.stt.transcribe(resample(spoken, 16_000))
        messages = context.with_user(words)
        await text_end_of_turn(hub.llm, messages)
        options = GenerationOptions(max_tokens=4, cpu_turns=CpuTurns())
        async for _ in hub.llm.stream_chat(messages, options):
            pass
        await read_ahead(hub.llm, context.messages())
    except Exception as exc:  # noqa: BLE001 - a warm-up must not stop the server
        log.warning("the first-turn warm-up failed: %s", exc)
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "took_s": round(time.perf_counter() - start, 3)}


async def _first_token(hub: EngineHub) -> None:
    stream = hub.llm.stream_chat([ChatMessage("user", "Hi")], GenerationOptions(max_tokens=2))
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]


async def _first_audio(hub: EngineHub, quality: str) -> None:
    stream = hub.tts(quality).synthesize_stream("Hello.", language="en")
    async for _ in stream:
        break
    await stream.aclose()
