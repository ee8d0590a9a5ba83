"""How usable a reference recording is for voice cloning: levels, noise, and transcript match.

Pure functions over samples and VAD speech spans, so they are cheap to test and to re-run (the
transcript accuracy is recomputed when a profile's ``reference_text`` changes). The thresholds
follow common guidance for cloning references: speech around -20 dBFS RMS, no flat-topped
peaks, at least 20 dB between speech and background, and a transcript that matches the audio.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from avatar.audio.pcm import PcmAudio, Samples

FRAME_S: Final = 0.02
EDGE_S: Final = 0.1  # frames this close to a speech span count as neither speech nor noise
MIN_NOISE_FRAMES: Final = 10
NOISE_PERCENTILE: Final = 10.0
POWER_FLOOR: Final = 1e-10  # -100 dBFS: below 16-bit quantisation noise
CLIP_LEVEL: Final = 0.999

QUIET_DBFS: Final = -35.0
CLIPPING_RATIO: Final = 0.001
NOISY_SNR_DB: Final = 20.0
MISMATCH_ACCURACY: Final = 0.8

_CJK = re.compile(
    r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)
_LETTER = re.compile(r"[^\W\d_]")


def dbfs(power: float) -> float:
    """Mean power (full scale = 1.0) in dBFS, floored at -100."""
    return round(10.0 * math.log10(max(power, POWER_FLOOR)), 1)


def frame_powers(samples: Samples, rate: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Mean power of each whole ``FRAME_S`` frame."""
    size = max(1, int(rate * FRAME_S))
    usable = len(samples) // size * size
    frames = samples[:usable].astype(np.float64).reshape(-1, size)
    return np.asarray((frames**2).mean(axis=1))


def speech_mask(
    n_frames: int, spans: Sequence[tuple[float, float]], margin_s: float
) -> tuple[np.ndarray[Any, np.dtype[np.bool_]], np.ndarray[Any, np.dtype[np.bool_]]]:
    """Per frame: inside a speech span, and clear of every span by ``margin_s``."""
    centres = (np.arange(n_frames) + 0.5) * FRAME_S
    speech = np.zeros(n_frames, dtype=bool)
    near = np.zeros(n_frames, dtype=bool)
    for start, end in spans:
        speech |= (centres >= start) & (centres < end)
        near |= (centres >= start - margin_s) & (centres < end + margin_s)
    return speech, ~near


def signal_report(audio: PcmAudio, spans: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Level, peak, clipping and signal-to-noise of ``audio`` given its VAD speech spans.

    Noise is the mean power of frames away from speech; with too little of that (speech from
    end to end) it falls back to the quietest decile of all frames (minimum statistics).
    """
    samples = np.asarray(audio.samples, dtype=np.float32)
    powers = frame_powers(samples, audio.sample_rate)
    speech, noise = speech_mask(len(powers), spans, EDGE_S)
    peak = float(np.abs(samples).max()) if len(samples) else 0.0
    speech_power = float(powers[speech].mean()) if speech.any() else 0.0
    if int(noise.sum()) >= MIN_NOISE_FRAMES:
        noise_power, method = float(powers[noise].mean()), "vad"
    elif len(powers):
        noise_power, method = float(np.percentile(powers, NOISE_PERCENTILE)), "percentile"
    else:
        noise_power, method = 0.0, "percentile"
    snr = dbfs(speech_power) - dbfs(noise_power) if speech.any() else None
    return {
        "level_dbfs": dbfs(speech_power),
        "peak": round(peak, 4),
        "peak_dbfs": round(20.0 * math.log10(max(peak, 1e-5)), 1),
        "clipping_ratio": round(float((np.abs(samples) >= CLIP_LEVEL).mean()), 6)
        if len(samples)
        else 0.0,
        "noise_floor_dbfs": dbfs(noise_power),
        "snr_db": None if snr is None else round(snr, 1),
        "snr_method": method,
    }


# --- transcript match ------------------------------------------------------------------------


def uses_characters(text: str) -> bool:
    """Score CJK text by character: it has no spaces between words."""
    return len(_CJK.findall(text)) > len(_LETTER.findall(_CJK.sub("", text)))


def tokens(text: str, *, characters: bool) -> list[str]:
    """Case-folded words (or characters) with punctuation and symbols removed."""
    norm = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in norm)
    if characters:
        return [ch for ch in kept if not ch.isspace()]
    return kept.split()


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance between token sequences (substitution, insertion, deletion: 1 each).

    A word written as one token on one side and two on the other ("seashells", "sea shells")
    matches at no cost: that is spelling, not a different recording.
    """
    width = len(hyp) + 1
    before: list[int] = []
    previous = list(range(width))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * (width - 1)
        for j, h in enumerate(hyp, 1):
            best = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
            if i > 1 and ref[i - 2] + r == h:
                best = min(best, before[j - 1])
            if j > 1 and hyp[j - 2] + h == r:
                best = min(best, previous[j - 2])
            current[j] = best
        before, previous = previous, current
    return previous[-1]


def transcript_accuracy(reference: str, transcript: str) -> tuple[float | None, str]:
    """``1 - error rate`` of ``transcript`` against ``reference``, clamped to 0-1, and the unit.

    None when the reference has nothing to compare (empty or only punctuation).
    """
    characters = uses_characters(reference)
    unit = "character" if characters else "word"
    ref = tokens(reference, characters=characters)
    if not ref:
        return None, unit
    errors = edit_distance(ref, tokens(transcript, characters=characters))
    return round(max(0.0, 1.0 - errors / len(ref)), 3), unit


# --- warnings --------------------------------------------------------------------------------


def quality_warnings(report: dict[str, Any]) -> list[dict[str, str]]:
    """What a user should fix before using the recording as a cloning reference."""
    found: list[dict[str, str]] = []
    level, clipped = report.get("level_dbfs"), report.get("clipping_ratio")
    if level is not None and level < QUIET_DBFS:
        found.append(
            _warning(
                "too_quiet",
                f"speech level is {level:g} dBFS, under {QUIET_DBFS:g} dBFS",
                "record closer to the microphone or raise the input gain",
            )
        )
    if clipped is not None and clipped > CLIPPING_RATIO:
        found.append(
            _warning(
                "clipping",
                f"{clipped:.2%} of samples are clipped at full scale",
                "lower the input gain and record again",
            )
        )
    snr = report.get("snr_db")
    if snr is not None and snr < NOISY_SNR_DB:
        found.append(
            _warning(
                "noisy",
                f"speech is only {snr:g} dB above the background noise (want {NOISY_SNR_DB:g} dB+)",
                "record in a quieter room, away from fans and traffic",
            )
        )
    accuracy = report.get("transcript_accuracy")
    if accuracy is not None and accuracy < MISMATCH_ACCURACY:
        found.append(
            _warning(
                "transcript_mismatch",
                f"the speech matches reference_text at only {accuracy:.0%}",
                "make reference_text exactly what is said in the recording",
            )
        )
    return found


def _warning(code: str, message: str, hint: str) -> dict[str, str]:
    return {"code": code, "message": message, "hint": hint}


def with_reference(report: dict[str, Any], reference_text: str) -> dict[str, Any]:
    """``report`` re-scored against a new reference text (no new ASR pass is needed)."""
    accuracy, unit = transcript_accuracy(reference_text, report.get("transcript") or "")
    updated = {**report, "transcript_accuracy": accuracy, "accuracy_unit": unit}
    updated["warnings"] = quality_warnings(updated)
    return updated
