"""The one in-memory audio type passed between engines: mono float32 samples and their rate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class PcmAudio:
    """Mono audio as float32 samples in [-1, 1] at ``sample_rate`` Hz."""

    samples: Samples
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0

    @classmethod
    def from_s16le(cls, data: bytes, sample_rate: int) -> PcmAudio:
        """Wrap little-endian signed 16-bit mono PCM (the wire format)."""
        if len(data) % 2:
            raise ValueError("s16le PCM needs an even number of bytes")
        ints = np.frombuffer(data, dtype="<i2")
        return cls((ints.astype(np.float32) / 32768.0), sample_rate)

    def to_s16le(self) -> bytes:
        """Little-endian signed 16-bit PCM, clipped."""
        clipped = np.clip(self.samples, -1.0, 1.0)
        return (clipped * 32767.0).astype("<i2").tobytes()

    @classmethod
    def silence(cls, seconds: float, sample_rate: int) -> PcmAudio:
        return cls(np.zeros(int(seconds * sample_rate), dtype=np.float32), sample_rate)

    def concat(self, other: PcmAudio) -> PcmAudio:
        if other.sample_rate != self.sample_rate:
            raise ValueError("cannot join audio of different sample rates")
        return PcmAudio(np.concatenate([self.samples, other.samples]), self.sample_rate)
