"""The input smart-turn v3 expects: the utterance's last 8 s as an 80 x 800 Whisper log-mel.

What the model was trained on (read from Pipecat's analyzer, which ships the model): 16 kHz mono
audio, the last 8 s kept, shorter audio zero-padded at the *start* (so the end of speech always
sits at the right edge), the whole 8 s window normalised to zero mean and unit variance, then
Whisper's log-mel (400-point FFT, hop 160, 80 Slaney mel bands, last frame dropped, clamped to
8 decades below the peak, scaled by (x + 4) / 4). The spectrogram itself is faster-whisper's.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt
from faster_whisper.feature_extractor import FeatureExtractor

SAMPLE_RATE = 16_000
WINDOW_S = 8
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_S
MEL_BANDS = 80
FRAMES = WINDOW_SAMPLES // 160  # 800
_VARIANCE_EPS = 1e-7


@cache
def _extractor() -> FeatureExtractor:
    return FeatureExtractor(feature_size=MEL_BANDS, sampling_rate=SAMPLE_RATE, chunk_length=8)


def last_window(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The last 8 s of ``samples``, left-padded with zeros when shorter."""
    tail = np.asarray(samples[-WINDOW_SAMPLES:], dtype=np.float32)
    return np.pad(tail, (WINDOW_SAMPLES - len(tail), 0))


def turn_features(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Model input of shape (1, 80, 800) from 16 kHz mono samples in [-1, 1]."""
    if samples.ndim != 1:
        raise ValueError(f"turn features need mono samples, got shape {samples.shape}")
    window = last_window(samples)
    window = (window - window.mean()) / np.sqrt(window.var() + _VARIANCE_EPS)
    mel = _extractor()(window, padding=0)
    return mel[np.newaxis, :, :FRAMES].astype(np.float32)
