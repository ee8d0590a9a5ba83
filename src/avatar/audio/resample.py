"""Sample-rate conversion with soxr: whole clips at once, or a stream chunk by chunk."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

from avatar.audio.pcm import PcmAudio, Samples

QUALITY = "HQ"


def resample(audio: PcmAudio, rate: int) -> PcmAudio:
    """``audio`` converted to ``rate`` Hz (returned unchanged if it is already at that rate)."""
    _check_rate(rate)
    if audio.sample_rate == rate:
        return audio
    if len(audio.samples) == 0:
        return PcmAudio(np.zeros(0, dtype=np.float32), rate)
    out = soxr.resample(_as_float32(audio.samples), audio.sample_rate, rate, quality=QUALITY)
    return PcmAudio(np.asarray(out, dtype=np.float32), rate)


class StreamResampler:
    """Resamples one mono stream chunk by chunk, keeping the filter state between chunks.

    Output lags input by the filter delay; pass ``last=True`` with the final chunk (it may be
    empty) to flush the tail. After that, call :meth:`reset` before starting a new stream.
    """

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = QUALITY) -> None:
        _check_rate(in_rate)
        _check_rate(out_rate)
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
        )
        self._finished = False

    def process(self, samples: npt.ArrayLike, last: bool = False) -> Samples:
        """Resample the next chunk; returns the output samples that are ready so far."""
        if self._finished:
            raise RuntimeError("stream already flushed with last=True; call reset() first")
        self._finished = last
        chunk = _as_float32(samples)
        if self._stream is None:
            return chunk
        out = self._stream.resample_chunk(chunk, last=last)
        return np.asarray(out, dtype=np.float32)

    def reset(self) -> None:
        """Forget the stream's state, ready for a new stream at the same rates."""
        if self._stream is not None:
            self._stream.clear()
        self._finished = False


def _as_float32(samples: npt.ArrayLike) -> Samples:
    array = np.ascontiguousarray(samples, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {array.shape}")
    return array


def _check_rate(rate: int) -> None:
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
