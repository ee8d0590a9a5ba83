"""Where the sound in a recording begins and ends: 20 ms frames above a level in dBFS.

Used to cut silent edges: a voice reference before cloning, synthesized speech whose model pads
it with silence (Kokoro starts each chunk with ~0.4 s of it and ends with ~0.6 s), and the
digital silence before a reply's first sound (Piper: 0-45 ms).
"""

from __future__ import annotations

import numpy as np

from avatar.audio.pcm import PcmAudio

FRAME_S = 0.02
SILENCE_DBFS = -42.0  # F5-TTS trims reference edges at this level (remove_silence_edges)
# Quieter than any microphone's noise floor: what a TTS model emits before it starts to speak.
# Piper's onsets rise from here to -42 dBFS over 5-25 ms; cutting only below it keeps them whole.
DIGITAL_SILENCE_DBFS = -70.0


def frame_dbfs(samples: np.ndarray, frame: int) -> np.ndarray:
    """The level of each whole ``frame``-sample frame of ``samples``, in dBFS."""
    count = len(samples) // frame
    frames = samples[: count * frame].reshape(count, frame).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return np.asarray(20 * np.log10(np.maximum(rms, 1e-10)))


def sound_span(
    samples: np.ndarray, rate: int, floor_dbfs: float = SILENCE_DBFS
) -> tuple[int, int] | None:
    """Sample indices ``[start, end)`` from the first to the end of the last frame louder than
    ``floor_dbfs``; None when no frame is."""
    frame = max(1, int(FRAME_S * rate))
    loud = np.flatnonzero(frame_dbfs(samples, frame) > floor_dbfs)
    if loud.size == 0:
        return None
    return int(loud[0]) * frame, min(len(samples), (int(loud[-1]) + 1) * frame)


def trim_edges(audio: PcmAudio, *, before_s: float, after_s: float) -> PcmAudio:
    """``audio`` with at most ``before_s`` of silence before its sound and ``after_s`` after
    it; unchanged when it holds no sound at all."""
    span = sound_span(audio.samples, audio.sample_rate)
    if span is None:
        return audio
    rate = audio.sample_rate
    start = max(0, span[0] - int(before_s * rate))
    end = min(len(audio.samples), span[1] + int(after_s * rate))
    if start == 0 and end == len(audio.samples):
        return audio
    return PcmAudio(audio.samples[start:end], rate)


def without_leading_silence(audio: PcmAudio, floor_dbfs: float = DIGITAL_SILENCE_DBFS) -> PcmAudio:
    """``audio`` from the first 20 ms frame louder than ``floor_dbfs`` on: the silence before the
    sound goes, the sound's onset stays whole. Unchanged when no frame is that loud."""
    span = sound_span(audio.samples, audio.sample_rate, floor_dbfs)
    if span is None or span[0] == 0:
        return audio
    return PcmAudio(audio.samples[span[0] :], audio.sample_rate)
