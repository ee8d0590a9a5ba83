"""Encode :class:`PcmAudio` to WAV (16-bit PCM), FLAC or Ogg Opus bytes, all in memory."""

from __future__ import annotations

import io
from typing import Final

import av
import numpy as np
import soundfile as sf

from avatar.audio.pcm import PcmAudio, Samples
from avatar.audio.resample import resample

# libopus accepts only these input rates.
OPUS_RATES: Final = (8000, 12000, 16000, 24000, 48000)


def encode_wav(audio: PcmAudio) -> bytes:
    """16-bit PCM mono WAV."""
    return _soundfile_bytes(audio, "WAV", "PCM_16")


def encode_flac(audio: PcmAudio) -> bytes:
    """16-bit mono FLAC. Raises ValueError for empty audio (libsndfile writes no file for it)."""
    _require_samples(audio, "FLAC")
    return _soundfile_bytes(audio, "FLAC", "PCM_16")


def encode_opus(audio: PcmAudio, bitrate: int = 32_000) -> bytes:
    """Mono Ogg Opus at ``bitrate`` bit/s, resampled first if libopus cannot take the rate.

    Raises ValueError for empty audio (the Ogg muxer writes no file for it).
    """
    _require_samples(audio, "Opus")
    if bitrate <= 0:
        raise ValueError(f"bitrate must be positive, got {bitrate}")
    audio = resample(audio, opus_rate(audio.sample_rate))
    out = io.BytesIO()
    with av.open(out, "w", format="ogg") as media:
        stream = media.add_stream("libopus", rate=audio.sample_rate, layout="mono")
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(
            _clipped(audio).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = audio.sample_rate
        frame.pts = 0
        for item in (frame, None):
            for packet in stream.encode(item):
                media.mux(packet)
    return out.getvalue()


def opus_rate(rate: int) -> int:
    """The lowest rate libopus accepts that keeps all of ``rate``'s bandwidth (48 kHz at most)."""
    return next((r for r in OPUS_RATES if r >= rate), OPUS_RATES[-1])


def _soundfile_bytes(audio: PcmAudio, fmt: str, subtype: str) -> bytes:
    out = io.BytesIO()
    sf.write(out, _clipped(audio), audio.sample_rate, format=fmt, subtype=subtype)
    return out.getvalue()


def _require_samples(audio: PcmAudio, fmt: str) -> None:
    if len(audio.samples) == 0:
        raise ValueError(f"cannot encode empty audio as {fmt}")


def _clipped(audio: PcmAudio) -> Samples:
    return np.clip(np.asarray(audio.samples, dtype=np.float32), -1.0, 1.0)
