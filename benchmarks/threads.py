"""Which thread counts let Whisper, llama.cpp and Piper share a small CPU best.

After the user stops talking, a turn's critical path is: Whisper on the utterance (alone), then
the LLM streaming while Piper speaks the first chunk (both at once). This runs that path in
process with the real packaged models for a few thread settings and prints, per setting, the
median STT time, time to the first token, to the first chunk of text, and to its audio (from the
start of the reply), over the benchmark questions in benchmarks/audio/.

    PYTHONPATH=src .venv/bin/python benchmarks/threads.py --runs 3
    PYTHONPATH=src .venv/bin/python benchmarks/threads.py --configs 2/2/2,2/1/1

A setting is ``stt/llm/tts`` threads (tts 0: ONNX Runtime's default, one per core; llm
``1:2``: decode on 1 thread, the prompt on 2). Record
``uptime`` beside the figures: on a shared machine they move with its load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import soundfile as sf

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import ChatMessage, GenerationOptions
from avatar.engines.llm.llamacpp import LlamaCppChat
from avatar.engines.stt.whisper import FasterWhisperStt
from avatar.engines.tts.piper import DEFAULT_MODEL, PiperTts
from avatar.models.store import ModelStore
from avatar.pipeline.responder import ReplyPlan, run_reply
from avatar.pipeline.turn import Turn
from avatar.settings import Settings

AUDIO = Path(__file__).parent / "audio"
DEFAULT_CONFIGS = "2/2/0,2/2/1,2/1/1,2/1/2,1/1/1"


def questions(count: int) -> list[PcmAudio]:
    manifest = json.loads((AUDIO / "manifest.json").read_text())
    files = [q["file"] for q in manifest if not q.get("warmup")][:count]
    clips = []
    for name in files:
        data, rate = sf.read(AUDIO / name, dtype="float32")
        clips.append(PcmAudio(data, rate))
    return clips


def engines(settings: Settings, stt: int, llm: str, tts: int) -> tuple[object, object, object]:
    models = ModelStore(settings.model_cache_dir)
    whisper = FasterWhisperStt.from_settings(
        settings.stt.model_copy(update={"threads": stt}), models
    )
    decode, _, batch = llm.partition(":")  # "1:2": decode on 1 thread, the prompt on 2
    llm_cfg = settings.llm.model_copy(
        update={"threads": int(decode), "batch_threads": int(batch) if batch else None}
    )
    chat = LlamaCppChat.from_settings(llm_cfg, models)
    piper = PiperTts(models.path(DEFAULT_MODEL), threads=tts or None)
    for engine in (whisper, chat, piper):
        engine.load()  # type: ignore[attr-defined]
    return whisper, chat, piper


async def one_turn(settings: Settings, whisper, chat, piper, clip: PcmAudio) -> dict[str, float]:
    start = time.perf_counter()
    text = (await whisper.transcribe(clip, language="en")).text.strip()
    stt_ms = (time.perf_counter() - start) * 1000
    turn = Turn(0, t0=time.perf_counter(), user_text=text)
    first_audio = asyncio.Event()

    async def send_audio(*_: object) -> None:
        first_audio.set()

    async def no_token(_: object) -> None: ...

    messages = [
        ChatMessage("system", settings.llm.system_prompt),
        ChatMessage("user", text),
    ]
    cfg = settings.llm
    plan = ReplyPlan(
        chat,
        piper,
        "fast",
        messages,
        GenerationOptions(max_tokens=cfg.max_tokens, temperature=0.0),
        "en",
        None,
        turn.t0,
        clock=_PerfClock(),
    )
    reply = asyncio.create_task(run_reply(turn, plan, no_token, send_audio))
    await asyncio.wait(
        [reply, asyncio.create_task(first_audio.wait())], return_when="FIRST_COMPLETED"
    )
    reply.cancel()
    await asyncio.gather(reply, return_exceptions=True)
    m = turn.metrics
    return {
        "stt_ms": stt_ms,
        "first_token_ms": m.get("llm_first_token_ms") or 0.0,
        "first_text_ms": m.get("first_text_ms") or 0.0,
        "first_audio_ms": m.get("tts_first_audio_ms") or 0.0,
        "total_ms": stt_ms + (m.get("tts_first_audio_ms") or 0.0),
    }


class _PerfClock:
    def now(self) -> float:
        return time.perf_counter()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def measure(config: str, runs: int, clips: list[PcmAudio]) -> dict[str, object]:
    stt, llm, tts = config.split("/")
    settings = Settings()
    whisper, chat, piper = engines(settings, int(stt), llm, int(tts))
    await one_turn(settings, whisper, chat, piper, clips[0])  # warm-up
    rows = [await one_turn(settings, whisper, chat, piper, c) for c in clips for _ in range(runs)]
    for engine in (whisper, chat, piper):
        engine.shutdown()  # type: ignore[attr-defined]
    medians = {k: round(statistics.median(r[k] for r in rows)) for k in rows[0]}
    return {"config": config, "n": len(rows), **medians, "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="stt/llm/tts thread triples")
    parser.add_argument("--runs", type=int, default=1, help="runs per question per setting")
    parser.add_argument("--questions", type=int, default=3)
    args = parser.parse_args()
    clips = questions(args.questions)
    print("setting stt/llm/tts | n | stt | 1st token | 1st text | 1st audio | stt+audio | load")
    for config in args.configs.split(","):
        r = asyncio.run(measure(config, args.runs, clips))
        print(
            f"{r['config']:>19} | {r['n']} | {r['stt_ms']} | {r['first_token_ms']} | "
            f"{r['first_text_ms']} | {r['first_audio_ms']} | {r['total_ms']} | {r['load']:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
