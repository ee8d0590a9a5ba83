"""smart-turn v3.2 (Pipecat, BSD-2-Clause) through onnxruntime: P(the spoken turn is complete).

The model is a Whisper-tiny encoder with a small classifier, 8.7 MB, trained on 23 languages
(see :mod:`avatar.engines.turn.features` for its input). It runs on the engine's own thread with
one onnxruntime thread, so it never takes both cores from Whisper or llama.cpp.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from avatar.audio.pcm import PcmAudio
from avatar.audio.resample import resample
from avatar.engines.base import TurnCapabilities
from avatar.engines.executor import ThreadedEngine
from avatar.engines.turn.features import SAMPLE_RATE, WINDOW_S, turn_features
from avatar.errors import ModelError

if TYPE_CHECKING:
    from avatar.models.store import ModelStore
    from avatar.settings import TurnSettings


class SmartTurnAnalyzer(ThreadedEngine):
    """Acoustic end-of-turn model; one instance serves every session (calls are serialised)."""

    name = "smart-turn"
    capabilities = TurnCapabilities(sample_rate=SAMPLE_RATE, window_s=WINDOW_S)

    def __init__(self, model_path: Path | Callable[[], Path], *, threads: int = 1) -> None:
        super().__init__()
        self._model_path = model_path  # a callable defers verifying a catalog model to load()
        self.threads = threads
        self._session: Any = None

    @classmethod
    def from_settings(cls, cfg: TurnSettings, models: ModelStore) -> SmartTurnAnalyzer:
        return cls(lambda: models.path(cfg.model), threads=cfg.threads)

    def _load(self) -> None:
        path = self._model_path() if callable(self._model_path) else self._model_path
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(
                f"onnxruntime could not load the turn model {path} ({exc})",
                hint="use the catalog model smart-turn-v3.2 or a smart-turn v3 ONNX file",
                code="model_load_failed",
            ) from exc

    def _unload(self) -> None:
        self._session = None

    async def completion_probability(self, audio: PcmAudio) -> float:
        """P(complete) for the utterance so far (any sample rate; the last 8 s are used)."""
        if len(audio.samples) == 0:
            raise ValueError("the turn model needs some audio, got none")
        if audio.sample_rate != SAMPLE_RATE:
            audio = resample(audio, SAMPLE_RATE)
        return await self.run(self.predict, audio.samples)

    def predict(self, samples: np.ndarray) -> float:
        """Blocking: P(complete) of 16 kHz mono float samples (call on the engine thread)."""
        self.load()
        session = self._session
        if session is None:
            raise ModelError("the turn model was unloaded", code="model_missing")
        out = session.run(None, {"input_features": turn_features(samples)})
        return float(np.asarray(out[0]).reshape(-1)[0])
