"""Piper's first audio on one thread and on two, with ONNX Runtime's busy-waiting on and off.

The question behind ``engines/cpu_turns.py``: is a chunk spoken sooner by Piper alone on both
cores (the chat model waiting) than by Piper on one core beside the decoding model? Times the
first audio of a few chunks, median of ``--runs``, and the process CPU each setting used.

    PYTHONPATH=src .venv/bin/python benchmarks/piper_threads.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import onnxruntime

from avatar.engines.tts.piper import DEFAULT_MODEL, PiperTts
from avatar.models.store import ModelStore
from avatar.settings import Settings

CHUNKS = ["The capital of France", "There are 7 days", "The largest ocean on Earth is the Pacific."]
SETTINGS = [(1, True), (2, True), (2, False), (1, True), (2, True), (2, False)]


async def first_audio_ms(piper: PiperTts, text: str) -> float:
    start = time.perf_counter()
    async for _ in piper.synthesize_stream(text, language="en"):
        break
    return (time.perf_counter() - start) * 1000


def session(path: str, threads: int, spinning: bool) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    cpu = ["CPUExecutionProvider"]
    return onnxruntime.InferenceSession(path, sess_options=options, providers=cpu)


async def main(runs: int) -> None:
    path = ModelStore(Settings().model_cache_dir).path(DEFAULT_MODEL)
    for threads, spinning in SETTINGS:
        piper = PiperTts(path, threads=threads)
        piper.load()
        assert piper._voice is not None
        piper._voice.session = session(str(path), threads, spinning)
        await first_audio_ms(piper, "Hello there.")  # warm-up
        cpu = time.process_time()
        medians = [
            statistics.median([await first_audio_ms(piper, c) for _ in range(runs)]) for c in CHUNKS
        ]
        cpu = time.process_time() - cpu
        shown = ", ".join(f"{c!r} {m:.0f} ms" for c, m in zip(CHUNKS, medians, strict=True))
        print(f"threads {threads}, spinning {spinning}: {shown}; CPU {cpu:.2f} s", flush=True)
        piper.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args().runs))
