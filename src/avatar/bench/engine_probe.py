"""Measure one engine in a fresh process (so peak memory is its own): load, first, full, RTF.

Run as ``python -m avatar.bench.engine_probe NAME RUNS``; prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import ChatMessage, GenerationOptions
from avatar.engines.registry import create_engine
from avatar.models.store import ModelStore
from avatar.settings import Settings, TtsSlotSettings

QUESTION = "What is the capital of France?"
SENTENCE = "The weather is lovely today, so let's take a walk along the river before dinner."


@dataclass
class ProbeResult:
    engine: str
    load_s: float
    first_ms: float  # time to first output (token, audio chunk, transcript)
    full_ms: float
    rtf: float | None  # processing time / audio duration
    peak_rss_mb: float
    runs: int
    note: str = ""


def speech_sample() -> PcmAudio:
    """Real human speech shipped inside moonshine-voice (about 10 s), at 16 kHz."""
    import moonshine_voice
    import soundfile as sf
    import soxr

    wav = Path(moonshine_voice.__file__).parent / "assets" / "beckett.wav"
    data, rate = sf.read(wav, dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    return PcmAudio(soxr.resample(mono, rate, 16_000).astype("float32"), 16_000)


Timed = Callable[[], Awaitable[tuple[float, float, float | None]]]  # first_ms, full_ms, audio_s


def _probes(settings: Settings, models: ModelStore) -> dict[str, tuple[object, Timed, str]]:
    def stt(name: str, language: str | None) -> tuple[object, Timed, str]:
        cfg = settings.stt.model_copy(update={"engine": name})
        engine = create_engine("stt", name, cfg, models)
        audio = speech_sample()

        async def run() -> tuple[float, float, float | None]:
            t = time.perf_counter()
            await engine.transcribe(audio, language=language)
            ms = (time.perf_counter() - t) * 1000
            return ms, ms, audio.duration_s

        return engine, run, f"{audio.duration_s:.1f}s speech, language={language or 'auto'}"

    def llm(model: str) -> tuple[object, Timed, str]:
        cfg = settings.llm.model_copy(update={"model": model})
        engine = create_engine("llm", "llama-cpp", cfg, models)

        async def run() -> tuple[float, float, float | None]:
            t = time.perf_counter()
            first = None
            msgs = [ChatMessage("user", QUESTION)]
            async for _ in engine.stream_chat(msgs, GenerationOptions(max_tokens=64)):
                first = first or (time.perf_counter() - t) * 1000
            return first or 0.0, (time.perf_counter() - t) * 1000, None

        return engine, run, "64 tokens max"

    def tts(name: str, model: str | None, language: str, text: str) -> tuple[object, Timed, str]:
        engine = create_engine("tts", name, TtsSlotSettings(engine=name, model=model), models)

        async def run() -> tuple[float, float, float | None]:
            t = time.perf_counter()
            first, total = None, 0.0
            async for chunk in engine.synthesize_stream(text, language=language):
                first = first or (time.perf_counter() - t) * 1000
                total += chunk.duration_s
            return first or 0.0, (time.perf_counter() - t) * 1000, total

        return engine, run, f"{len(text.split())} words, {language}"

    def speaker() -> tuple[object, Timed, str]:
        engine = create_engine("speaker", "voicefilter", settings.speaker, models)
        audio = speech_sample()

        async def run() -> tuple[float, float, float | None]:
            t = time.perf_counter()
            await engine.embed(audio)
            ms = (time.perf_counter() - t) * 1000
            return ms, ms, audio.duration_s

        return engine, run, f"{audio.duration_s:.1f}s speech"

    return {
        "stt:faster-whisper(auto)": stt("faster-whisper", None),
        "stt:faster-whisper(en)": stt("faster-whisper", "en"),
        "stt:moonshine": stt("moonshine", "en"),
        "llm:qwen2.5-coder-0.5b": llm("qwen2.5-coder-0.5b-instruct"),
        "llm:smollm2-135m": llm("smollm2-135m-instruct"),
        "tts:piper-joe": tts("piper", "piper-joe", "en", SENTENCE),
        "tts:espeak-ng(zh)": tts("espeak-ng", None, "zh", "今天天气很好，我们去河边散步吧。"),
        "tts:kokoro(zh)": tts("kokoro", "kokoro-82m", "zh", "今天天气很好，我们去河边散步吧。"),
        "speaker:voicefilter": speaker(),
    }


PROBES = [
    "stt:faster-whisper(auto)",
    "stt:faster-whisper(en)",
    "stt:moonshine",
    "llm:qwen2.5-0.5b",
    "llm:smollm2-135m",
    "tts:piper-joe",
    "tts:espeak-ng(zh)",
    "tts:kokoro(zh)",
    "speaker:voicefilter",
]


async def probe(name: str, runs: int, settings: Settings) -> ProbeResult:
    models = ModelStore(settings.model_cache_dir)
    builders = _probes(settings, models)
    engine, run, note = builders[name]
    t = time.perf_counter()
    engine.load()  # type: ignore[attr-defined]
    load_s = time.perf_counter() - t
    await run()  # warm-up, not counted
    results = [await run() for _ in range(runs)]
    first = statistics.median(r[0] for r in results)
    full = statistics.median(r[1] for r in results)
    audio_s = results[0][2]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return ProbeResult(
        name,
        round(load_s, 2),
        round(first, 1),
        round(full, 1),
        round(full / 1000 / audio_s, 3) if audio_s else None,
        round(peak),
        runs,
        note,
    )


def main() -> None:
    name, runs = sys.argv[1], int(sys.argv[2])
    result = asyncio.run(probe(name, runs, Settings()))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
