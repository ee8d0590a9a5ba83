"""`avatar bench stt`: Whisper padded to 30 s vs trimmed to the utterance, on a fixed speech set.

Word error rate for English, character error rate for Mandarin (both texts converted to
Simplified first, punctuation and spaces dropped, so script does not count as an error); time
per utterance (median of ``repeats`` runs, language auto-detected as the server does), how often
the trimmed decode's guard sent an utterance back to the padded decode, and the language-detection
cost alone (one encoder pass + one decoder step) padded vs trimmed.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from avatar.bench.stt_set import Sample
from avatar.engines.stt import whisper_trim as wt
from avatar.engines.stt.whisper import decode

MODES = ("padded", "trimmed")


@dataclass(frozen=True, slots=True)
class Measure:
    """One sample decoded one way by one model."""

    model: str
    mode: str
    group: str
    name: str
    language: str
    duration_s: float
    detected: str
    reference: str
    text: str
    errors: int
    length: int
    ms: float  # median over repeats
    detect_ms: float  # encoder + language detection only, median
    fell_back: str | None
    rejected: str | None  # what the trimmed decode first said, when the guard objected


def units(text: str, language: str) -> list[str]:
    """Words (English, lower case, no punctuation) or characters (Chinese, Simplified)."""
    if language == "zh":
        return [c for c in _simplified(text) if c.isalnum()]
    return re.sub(r"[^\w' ]+", " ", text.lower().replace("-", " ")).split()


def _simplified(text: str) -> str:
    try:
        import opencc
    except ImportError:  # comparison then counts script differences as errors
        return text
    return str(opencc.OpenCC("t2s").convert(text))


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over tokens (substitutions, insertions, deletions)."""
    row = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, row = row, np.empty_like(row)
        row[0] = i
        for j, h in enumerate(hyp, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h))
    return int(row[-1])


@dataclass(frozen=True, slots=True)
class Loaded:
    """One Whisper model as the engine loads it: an instance per decode path (each with its own
    threads, ``stt.trimmed_threads`` and ``stt.threads``; the same object when they agree)."""

    trimmed: Any
    padded: Any


def _median_ms(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), out


def _detect(model: Any, samples: np.ndarray, trimmed: bool) -> str:
    if trimmed and wt.trimmable(samples):
        window = wt.window(model, samples)
    else:
        from faster_whisper.audio import pad_or_trim

        features = model.feature_extractor(samples)
        window = pad_or_trim(features[:, : features.shape[-1] - 1])
    return wt.detect_language(model, model.encode(window))[0]


def measure(model_name: str, model: Loaded, sample: Sample, mode: str, repeats: int) -> Measure:
    """Decode ``sample`` ``repeats`` times the ``mode`` way (language auto) and score it."""
    trimmed = mode == "trimmed"
    ms, out = _median_ms(
        lambda: decode(model.trimmed, sample.samples, None, 1, trimmed, None, model.padded),
        repeats,
    )
    detector = model.trimmed if trimmed else model.padded
    detect_ms, _ = _median_ms(lambda: _detect(detector, sample.samples, trimmed), repeats)
    ref, hyp = units(sample.reference, sample.language), units(out.text, sample.language)
    return Measure(
        model_name,
        mode,
        sample.group,
        sample.name,
        sample.language,
        round(sample.duration_s, 2),
        out.language,
        sample.reference,
        out.text,
        edit_distance(ref, hyp),
        len(ref),
        ms,
        detect_ms,
        out.fallback if trimmed else None,
        out.rejected,
    )


def run(
    models: dict[str, Loaded],
    samples: list[Sample],
    repeats: int,
    advance: Callable[[str], None] = lambda _: None,
) -> list[Measure]:
    """Every sample through every model both ways; one warm-up decode per model first."""
    out = []
    for name, model in models.items():
        decode(model.trimmed, samples[0].samples, None, 1, True, None, model.padded)
        for sample in samples:
            for mode in MODES:
                advance(f"{name} {mode} {sample.name}")
                out.append(measure(name, model, sample, mode, repeats))
    return out


def summarize(measures: list[Measure]) -> list[dict[str, Any]]:
    """One row per model, group and mode: error rate (%), times (ms), fallbacks, wrong language."""
    keys = dict.fromkeys((m.model, m.group, m.mode) for m in measures)
    rows = []
    for model, group, mode in keys:
        ms = [m for m in measures if (m.model, m.group, m.mode) == (model, group, mode)]
        rows.append(
            {
                "model": model,
                "group": group,
                "mode": mode,
                "metric": "CER" if ms[0].language == "zh" else "WER",
                "error_rate_pct": 100
                * sum(m.errors for m in ms)
                / max(1, sum(m.length for m in ms)),
                "median_ms": statistics.median(m.ms for m in ms),
                "max_ms": max(m.ms for m in ms),
                "detect_median_ms": statistics.median(m.detect_ms for m in ms),
                "fallbacks": sum(m.fell_back is not None for m in ms),
                "wrong_language": sum(m.detected != m.language for m in ms),
                "n": len(ms),
                "audio_s": round(sum(m.duration_s for m in ms), 1),
            }
        )
    return rows


def as_json(measures: list[Measure], rows: list[dict[str, Any]], meta: dict[str, Any]) -> dict:
    return {"meta": meta, "summary": rows, "utterances": [asdict(m) for m in measures]}
