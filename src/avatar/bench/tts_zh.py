"""Mandarin TTS intelligibility: speak fixed sentences, hear them back with Whisper, score CER.

Each voice (espeak-ng ``cmn`` and every Kokoro voice style) speaks the same everyday sentences;
whisper-base transcribes the audio (``language="zh"``); the character error rate is computed
after both texts are put into one form: Simplified script (OpenCC), numbers spoken out (the TTS
normaliser), no punctuation or spaces, Latin lower-cased. Also timed: first audio chunk after
the call (engine loaded and warmed up), the real-time factor (synthesis time / audio length) and
the CPU real-time factor (process CPU seconds / audio seconds: what a busy machine cannot hide).
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import TextToSpeech
from avatar.engines.tts.zh_normalize import normalize_zh

SENTENCES = (
    "蜘蛛有八条腿。",
    "请帮我设定明天早上7点的闹钟。",
    "今天天气很好，我们去公园散步吧。",
    "这家餐厅的牛肉面非常好吃。",
    "我下午3:30要去医院看医生。",
    "这件衣服打八折，只要199元。",
    "你可以用Email把文件发给我吗？",
    "地铁站离这里走路大概十分钟。",
    "今年有50%的学生选择学习中文。",
    "请把空调的温度调到26度。",
    "我每天早上喝一杯咖啡。",
    "2026年12月6日是星期日。",
)
_NOT_SPOKEN = re.compile(r"[^\w]|_", re.UNICODE)


def spoken_form(text: str) -> str:
    """One comparable form of a Chinese text: Simplified, numbers as words, no punctuation."""
    import opencc

    simplified = opencc.OpenCC("t2s").convert(text)
    return _NOT_SPOKEN.sub("", normalize_zh(simplified)).lower()


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate of ``hypothesis`` against ``reference`` (script-insensitive)."""
    ref, hyp = spoken_form(reference), spoken_form(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / max(1, len(ref))


@dataclass
class Heard:
    """One sentence spoken and heard back."""

    text: str
    transcript: str
    cer: float
    first_s: float
    synth_s: float
    cpu_s: float  # CPU time of the whole process while synthesising (all threads)
    audio_s: float


@dataclass
class VoiceResult:
    """All sentences of one voice."""

    voice: str
    load_s: float
    heard: list[Heard] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        cers = [h.cer for h in self.heard]
        audio = sum(h.audio_s for h in self.heard)
        return {
            "voice": self.voice,
            "mean_cer": round(statistics.fmean(cers), 3),
            "exact": sum(c == 0 for c in cers),
            "sentences": len(cers),
            "first_chunk_ms_p50": round(statistics.median(h.first_s for h in self.heard) * 1e3),
            "rtf": round(sum(h.synth_s for h in self.heard) / audio, 3) if audio else None,
            "cpu_rtf": round(sum(h.cpu_s for h in self.heard) / audio, 3) if audio else None,
            "load_s": round(self.load_s, 2),
        }


async def speak(engine: TextToSpeech, text: str) -> tuple[PcmAudio, float, float]:
    """Audio of ``text``, seconds to its first chunk, seconds for all of it."""
    start = time.perf_counter()
    first: float | None = None
    parts: list[PcmAudio] = []
    async for chunk in engine.synthesize_stream(text, language="zh"):
        first = time.perf_counter() - start if first is None else first
        parts.append(chunk)
    total = time.perf_counter() - start
    samples = np.concatenate([p.samples for p in parts])
    return PcmAudio(samples, parts[0].sample_rate), first or total, total


def transcribe(whisper: Any, audio: PcmAudio) -> str:
    samples = soxr.resample(audio.samples, audio.sample_rate, 16_000).astype(np.float32)
    segments, _ = whisper.transcribe(samples, language="zh", beam_size=5)
    return "".join(s.text for s in segments).strip()


def evaluate(
    name: str,
    make: Callable[[], TextToSpeech],
    whisper: Any,
    sentences: tuple[str, ...] = SENTENCES,
    on_sentence: Callable[[], None] = lambda: None,
) -> VoiceResult:
    """Load the engine ``make()`` builds, warm it up, and speak and hear every sentence."""
    start = time.perf_counter()
    engine = make()
    engine.load()
    result = VoiceResult(name, time.perf_counter() - start)
    asyncio.run(speak(engine, "你好。"))  # warm-up: first ONNX run, jieba dictionary
    for text in sentences:
        cpu = time.process_time()
        audio, first, total = asyncio.run(speak(engine, text))
        cpu = time.process_time() - cpu
        heard = transcribe(whisper, audio)
        score = cer(text, heard)
        result.heard.append(Heard(text, heard, score, first, total, cpu, audio.duration_s))
        on_sentence()
    getattr(engine, "shutdown", engine.unload)()
    return result


def machine_load() -> str:
    """The 1/5/15-minute load averages and core count, to print beside the figures."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def setup(settings: Any, names: list[str]) -> tuple[Any, dict[str, Callable[[], TextToSpeech]]]:
    """whisper-base and one engine factory per voice name ('espeak-ng' or a Kokoro style)."""
    from faster_whisper import WhisperModel

    from avatar.engines.tts.espeak import EspeakTts
    from avatar.engines.tts.kokoro import DEFAULT_MODEL, KokoroTts
    from avatar.models.store import ModelStore

    models = ModelStore(settings.model_cache_dir)
    whisper = WhisperModel(
        str(models.path("whisper-base")), device="cpu", compute_type="int8", cpu_threads=2
    )
    kokoro = models.path(DEFAULT_MODEL)
    makers: dict[str, Callable[[], TextToSpeech]] = {}
    for name in names:
        if name == "espeak-ng":
            makers[name] = EspeakTts
        else:
            KokoroTts(kokoro, voice=name)  # an unknown style fails here, before any work
            makers[name] = lambda voice=name: KokoroTts(kokoro, voice=voice)  # type: ignore[misc]
    return whisper, makers
