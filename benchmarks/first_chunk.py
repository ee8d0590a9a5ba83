"""When the first speakable chunk is ready, with and without the chunker's early first cut.

Streams the real LLM's reply to each benchmark question once, keeping the time of every delta,
then replays the same deltas through ``TextChunker`` with the early cut (before a clause
opener, or after ``max_first_words`` words) and without it (``max_first_words=0``: clause marks
and sentence ends only), for the first ``--questions`` benchmark questions plus four open ones.
Same tokens, same times: the difference is the chunker's alone. Also times Piper on each first
chunk (the TTS wait that follows).

    PYTHONPATH=src .venv/bin/python benchmarks/first_chunk.py --questions 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from avatar.engines.base import ChatMessage, GenerationOptions
from avatar.engines.llm.llamacpp import LlamaCppChat
from avatar.engines.tts.piper import DEFAULT_MODEL, PiperTts
from avatar.models.store import ModelStore
from avatar.pipeline.chunker import TextChunker
from avatar.settings import Settings

AUDIO = Path(__file__).parent / "audio"
# Open questions, whose answers start with a long sentence (the factual ones start short).
OPEN = [
    "Tell me about the Great Wall of China.",
    "Explain how a rainbow forms.",
    "Why do leaves change colour in autumn?",
    "Describe a good way to spend a rainy Sunday.",
]


async def timed_deltas(chat: LlamaCppChat, settings: Settings, q: str) -> list[tuple[float, str]]:
    messages = [ChatMessage("system", settings.llm.system_prompt), ChatMessage("user", q)]
    options = GenerationOptions(max_tokens=settings.llm.max_tokens, temperature=0.0)
    start, out = time.perf_counter(), []
    async for delta in chat.stream_chat(messages, options):
        out.append(((time.perf_counter() - start) * 1000, delta))
    return out


def first_chunk(deltas: list[tuple[float, str]], **options: int) -> tuple[float, str]:
    chunker = TextChunker(**options)
    for at, delta in deltas:
        if chunks := chunker.push(delta):
            return at, chunks[0]
    return deltas[-1][0], chunker.flush()[0]


async def piper_ms(piper: PiperTts, text: str) -> float:
    start = time.perf_counter()
    async for _ in piper.synthesize_stream(text, language="en"):
        break
    return (time.perf_counter() - start) * 1000


async def main(count: int) -> None:
    settings = Settings()
    models = ModelStore(settings.model_cache_dir)
    chat = LlamaCppChat.from_settings(settings.llm, models)
    piper = PiperTts(models.path(DEFAULT_MODEL), threads=settings.tts.fast.threads)
    chat.load()
    piper.load()
    manifest = json.loads((AUDIO / "manifest.json").read_text())
    texts = [q["text"] for q in manifest if not q.get("warmup")][:count] + OPEN
    await timed_deltas(chat, settings, texts[0])  # warm-up
    rows = []
    for q in texts:
        deltas = await timed_deltas(chat, settings, q)
        (old_ms, old), (new_ms, new) = first_chunk(deltas, max_first_words=0), first_chunk(deltas)
        rows.append((old_ms, await piper_ms(piper, old), new_ms, await piper_ms(piper, new)))
        print(f"{q!r}: {old_ms:.0f} ms {old!r} -> {new_ms:.0f} ms {new!r}", flush=True)
    chat.shutdown()
    piper.shutdown()
    old_ready = [r[0] + r[1] for r in rows]
    new_ready = [r[2] + r[3] for r in rows]
    print(
        f"median first text + Piper: without early cut {statistics.median(old_ready):.0f} ms, "
        f"with {statistics.median(new_ready):.0f} ms (n={len(rows)}, load {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20)
    asyncio.run(main(parser.parse_args().questions))
