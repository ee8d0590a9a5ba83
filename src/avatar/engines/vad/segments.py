"""Offline speech segmentation: run a VAD over a whole recording and return the speech spans.

Used where the audio is complete already (voice-profile quality checks, tests, tools); the live
path uses the endpointing state machine instead. Hysteresis follows Silero's reference
``get_speech_timestamps``: speech starts at ``threshold`` and only ends once the probability has
stayed below ``threshold - 0.15`` for ``min_silence_ms``.
"""

from __future__ import annotations

import numpy as np
import soxr

from avatar.audio.pcm import PcmAudio, Samples
from avatar.engines.base import VoiceActivityDetector

_HYSTERESIS = 0.15


def frame_probabilities(audio: PcmAudio, vad: VoiceActivityDetector) -> list[float]:
    """Speech probability of each VAD frame of ``audio`` (the last frame zero-padded)."""
    samples = _at_rate(audio, vad.capabilities.sample_rate)
    size = vad.capabilities.frame_samples
    padded = np.zeros(-(-len(samples) // size) * size, dtype=np.float32)
    padded[: len(samples)] = samples
    vad.reset()
    probs = [vad.probability(padded[i : i + size]) for i in range(0, len(padded), size)]
    vad.reset()
    return probs


def speech_segments(
    audio: PcmAudio,
    vad: VoiceActivityDetector,
    threshold: float = 0.5,
    min_speech_ms: int = 250,
    min_silence_ms: int = 300,
) -> list[tuple[float, float]]:
    """Speech spans ``(start_s, end_s)`` in ``audio``, in order.

    Spans shorter than ``min_speech_ms`` are dropped; pauses shorter than ``min_silence_ms``
    do not split a span. Times are in seconds from the start of ``audio``.
    """
    frame_s = vad.capabilities.frame_samples / vad.capabilities.sample_rate
    probs = frame_probabilities(audio, vad)
    spans = _spans(probs, threshold, max(1, round(min_silence_ms / 1000 / frame_s)))
    min_frames = min_speech_ms / 1000 / frame_s
    duration = audio.duration_s
    return [
        (start * frame_s, min(end * frame_s, duration))
        for start, end in spans
        if end - start >= min_frames
    ]


def _spans(probs: list[float], threshold: float, silence_frames: int) -> list[tuple[int, int]]:
    """Frame-index spans [start, end) of speech, with hysteresis and a silence hangover."""
    low = max(threshold - _HYSTERESIS, 0.01)
    spans: list[tuple[int, int]] = []
    start: int | None = None
    silent_since: int | None = None
    for i, p in enumerate(probs):
        if start is None:
            if p >= threshold:
                start, silent_since = i, None
            continue
        if p >= threshold:
            silent_since = None
        elif p < low:
            silent_since = i if silent_since is None else silent_since
            if i - silent_since + 1 >= silence_frames:
                spans.append((start, silent_since))
                start, silent_since = None, None
    if start is not None:
        spans.append((start, silent_since if silent_since is not None else len(probs)))
    return spans


def _at_rate(audio: PcmAudio, rate: int) -> Samples:
    samples = np.asarray(audio.samples, dtype=np.float32)
    if audio.sample_rate == rate or len(samples) == 0:
        return samples
    return np.asarray(soxr.resample(samples, audio.sample_rate, rate), dtype=np.float32)
