"""How llama.cpp's OpenMP threads should wait: decode speed alone, and sharing under saturation.

OpenMP reads ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` once, when its library loads, so every
setting runs in a fresh child process with the variables set before anything is imported.

    PYTHONPATH=src .venv/bin/python benchmarks/openmp_wait.py decode --spins 0,300,1000,10000
    PYTHONPATH=src .venv/bin/python benchmarks/openmp_wait.py mix --spins none,1000 --seconds 25

``decode``: Qwen2.5-0.5B (the default chat model) generates 26 tokens greedily on two threads;
the median time per token. ``mix``: the chat model (two threads, an end-of-turn pass then a
40-token reply, in a loop), Whisper (on a benchmark question, in a loop) and Piper (a sentence,
in a loop) run at once for ``--seconds``; how much each got done. ``none`` leaves
``GOMP_SPINCOUNT`` unset (the passive policy alone). Record ``uptime`` beside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

PROMPT = "<|im_start|>user\nTell me a long story about France.<|im_end|>\n<|im_start|>assistant\n"


def decode() -> dict[str, float]:
    import llama_cpp

    from avatar.engines.hub import EngineHub
    from avatar.engines.llm.llamacpp import plain_cpu_weights
    from avatar.settings import Settings

    settings = Settings()
    path = EngineHub(settings).models.path(settings.llm.model)
    with plain_cpu_weights():
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_threads=2, verbose=False)
    tokens = llm.tokenize(PROMPT.encode(), special=True)
    times = []
    for i, _token in enumerate(llm.generate(tokens, temp=0.0)):
        times.append(time.perf_counter())
        if i >= 25:
            break
    gaps = sorted((b - a) * 1000 for a, b in zip(times, times[1:], strict=False))
    return {"ms_per_token": round(gaps[len(gaps) // 2], 1)}


async def mix(seconds: float) -> dict[str, int]:
    from avatar.audio.pcm import PcmAudio
    from avatar.bench.latency import make_clips
    from avatar.engines.base import ChatMessage, GenerationOptions
    from avatar.engines.cpu_turns import CpuTurns
    from avatar.engines.hub import EngineHub
    from avatar.settings import Settings

    settings = Settings()
    hub = EngineHub(settings)
    hub.preload(["stt", "llm", "tts.fast"])
    question = PcmAudio.from_s16le((await make_clips(hub))[1].pcm, 16_000)
    counts = {"llm_tokens": 0, "stt_calls": 0, "tts_calls": 0}
    stop = time.monotonic() + seconds

    async def chat() -> None:
        system = ChatMessage("system", settings.llm.system_prompt)
        n = 0
        while time.monotonic() < stop:
            n += 1
            messages = [system, ChatMessage("user", f"Tell me a story about the number {n}.")]
            await hub.llm.end_of_turn_probability(messages)  # type: ignore[attr-defined]
            options = GenerationOptions(max_tokens=40, cpu_turns=CpuTurns())
            async for _ in hub.llm.stream_chat(messages, options):
                if time.monotonic() >= stop:
                    break
                counts["llm_tokens"] += 1

    async def listen() -> None:
        while time.monotonic() < stop:
            await hub.stt.transcribe(question, language=None)
            counts["stt_calls"] += 1

    async def speak() -> None:
        sentence = "The capital of France is Paris, a city of light."
        while time.monotonic() < stop:
            async for _ in hub.tts("fast").synthesize_stream(sentence, language="en"):
                pass
            counts["tts_calls"] += 1

    await asyncio.gather(chat(), listen(), speak())
    return counts


def child(what: str, seconds: float) -> None:
    result = decode() if what == "decode" else asyncio.run(mix(seconds))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["decode", "mix"])
    parser.add_argument("--spins", default="none,0,300,1000,10000")
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.what, args.seconds)
        return
    for spins in args.spins.split(","):
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        env.pop("GOMP_SPINCOUNT", None)
        if spins != "none":
            env["GOMP_SPINCOUNT"] = spins
        command = [sys.executable, __file__, args.what, "--child", "--seconds", str(args.seconds)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        print(f"GOMP_SPINCOUNT={spins}: {done.stdout.strip().splitlines()[-1]}", flush=True)


if __name__ == "__main__":
    main()
