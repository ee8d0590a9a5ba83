"""CosyVoice2 (FunAudioLLM/CosyVoice): high-quality zero-shot voice cloning; 24 kHz; streaming.

Install: CosyVoice is not published on PyPI as a library (the ``cosyvoice`` name there is an
unrelated 0.0.8 fork without ``cosyvoice.cli``). Use a checkout of the official repository::

    git clone --recursive https://github.com/FunAudioLLM/CosyVoice
    pip install torch torchaudio HyperPyYAML modelscope (see docs/GPU.md)
    export PYTHONPATH=$PWD/CosyVoice:$PWD/CosyVoice/third_party/Matcha-TTS

Not ``pip install -r CosyVoice/requirements.txt``: it pins fastapi 0.115, pydantic 2.7 and numpy
1.26 below AVATAR's own, and onnxruntime-gpu, which clashes with the embedded engines' onnxruntime.

Weights: a local ``CosyVoice2-0.5B`` folder (with ``cosyvoice2.yaml``), or, with downloads
allowed, a ModelScope id (default ``iic/CosyVoice2-0.5B``) the library fetches itself.

VRAM: about 4 GB budgeted: 2.6 GB of fp32 weights (``llm.pt`` 2.02 GB, ``flow.pt`` 451 MB,
``hift.pt`` 83 MB on the Hugging Face model page), the speech tokenizer ONNX model (~0.5 GB, on
CUDA only with onnxruntime-gpu) and activations; fp16 (the default on CUDA here) halves the LLM and
flow weights. CosyVoice picks its device itself (``torch.device('cuda')`` whenever CUDA is
visible, and a helper thread per request), so it runs on the first visible GPU only: use
``cuda:0`` and ``CUDA_VISIBLE_DEVICES`` to choose the card.

Library API used (``cosyvoice/cli/cosyvoice.py``, FunAudioLLM/CosyVoice, 2025 ``prompt_wav`` API):
``CosyVoice2(model_dir, load_jit=False, load_trt=False, fp16=False)``, ``.sample_rate``,
``add_zero_shot_spk(prompt_text, prompt_wav, zero_shot_spk_id)`` (computes the prompt's text
tokens, speech tokens, mel features and speaker embedding once and keeps them in
``frontend.spk2info``) and ``inference_zero_shot(tts_text, prompt_text, prompt_wav,
zero_shot_spk_id=..., stream=..., speed=...)`` yielding ``{"tts_speech": tensor(1, n)}``.
A cancelled reply stops at the next chunk; the library's token thread finishes on its own.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import TtsCapabilities, VoiceRef
from avatar.engines.executor import ThreadedEngine
from avatar.engines.tts.conditioning import (
    Conditioning,
    ConditioningCache,
    ConditioningKey,
    Reference,
    import_library,
    prepare_reference,
    reference_digest,
    reference_from_file,
    reference_from_voice,
    require_library,
    to_pcm,
)
from avatar.engines.tts.language import UnsupportedLanguage, primary_language, require_text
from avatar.errors import AudioError, EngineFailed, EngineUnavailable, ModelError
from avatar.system.cuda import cuda_available, free_cuda_memory, oom_guard, resolve_auto_device
from avatar.system.placement import parse_device

if TYPE_CHECKING:
    from avatar.models.store import ModelStore
    from avatar.settings import TtsSlotSettings

INSTALL = (
    "pip install torch torchaudio HyperPyYAML modelscope (see docs/GPU.md) and put a checkout of"
    " https://github.com/FunAudioLLM/CosyVoice (and its third_party/Matcha-TTS) on PYTHONPATH;"
    " see docs/GPU.md"
)
MODULE = "cosyvoice.cli.cosyvoice"
DEFAULT_MODEL = "iic/CosyVoice2-0.5B"
SAMPLE_RATE = 24_000
MAX_REFERENCE_S = 15.0  # the speech tokenizer refuses > 30 s; long prompts slow every reply
LANGUAGES = frozenset({"zh", "en", "ja", "ko", "yue"})
EXAMPLE_VOICE = ("asset/zero_shot_prompt.wav", "希望你以后能够做的比我还好呦。")  # in the checkout


def resolve_cosyvoice_model(model: str | None, *, allow_downloads: bool) -> str:
    """A local CosyVoice2 folder, or a ModelScope id when downloads are allowed."""
    name = model or DEFAULT_MODEL
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "cosyvoice2.yaml").is_file():
            raise ModelError(
                f"{path} is not a CosyVoice2 model folder (no cosyvoice2.yaml)",
                hint="download FunAudioLLM/CosyVoice2-0.5B and point the model setting at it",
                code="model_invalid",
            )
        return str(path)
    if path.exists() or not allow_downloads:
        raise ModelError(
            f"CosyVoice2 model {name!r} is not a local model folder",
            hint="point AVATAR_TTS__*__MODEL at a CosyVoice2-0.5B folder, or set"
            " AVATAR_MODELS__ALLOW_DOWNLOADS=true to fetch a ModelScope id",
            code="model_not_packaged" if not path.exists() else "model_invalid",
        )
    return name


def check_device(device: str) -> str:
    """The device CosyVoice will really use, or :class:`EngineUnavailable` if it cannot obey."""
    kind, index = parse_device(device)
    if kind == "cpu" and cuda_available():
        raise EngineUnavailable(
            "CosyVoice uses the GPU whenever one is visible, so it cannot be held on the CPU",
            hint="set the device to cuda:0, or hide the GPUs with CUDA_VISIBLE_DEVICES=",
        )
    if kind == "cuda" and index not in (None, 0):
        raise EngineUnavailable(
            f"CosyVoice runs only on the first visible GPU, not {device}",
            hint=f"use cuda:0 and CUDA_VISIBLE_DEVICES={index} (that card becomes cuda:0)",
        )
    if kind == "cuda" and not cuda_available():
        raise EngineUnavailable(f"{device} is set but no CUDA GPU is visible to torch")
    return "cuda:0" if kind == "cuda" else "cpu"


class CosyVoice2Tts(ThreadedEngine):
    """CosyVoice2 voice cloning (the ``hq`` engine); streams chunks of about a second."""

    name = "cosyvoice2"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "auto",
        voice: str | None = None,
        allow_downloads: bool = False,
        stream: bool = True,
        fp16: bool | None = None,
    ) -> None:
        super().__init__()
        self.capabilities = TtsCapabilities(
            SAMPLE_RATE, LANGUAGES, streaming=stream, cloning=True, quality="hq"
        )
        self.model_dir = resolve_cosyvoice_model(model, allow_downloads=allow_downloads)
        self.device = device
        self.voice_file = Path(voice).expanduser() if voice else None
        self.stream_output = stream
        self.fp16 = fp16
        self.conditioning = ConditioningCache(on_evict=self._forget_speaker)
        self._model: Any = None
        self._rate = SAMPLE_RATE
        self._speakers: set[str] = set()
        self._example: Path | None = None

    @classmethod
    def from_settings(cls, cfg: TtsSlotSettings, models: ModelStore) -> CosyVoice2Tts:
        require_library(MODULE, engine=cls.name, install=INSTALL)
        return cls(
            cfg.model, device=cfg.device, voice=cfg.voice, allow_downloads=models.allow_downloads
        )

    def set_conditioning_folder(self, folder: Path | None) -> None:
        """Keep prepared references under ``folder`` (``<data_dir>/conditioning``) across runs."""
        old = self.conditioning
        self.conditioning = ConditioningCache(folder, on_evict=self._forget_speaker)
        old.close()

    def shutdown(self) -> None:
        super().shutdown()
        self.conditioning.close()

    # --- load / unload ------------------------------------------------------------------------

    def _load(self) -> None:
        module = import_library(MODULE, engine=self.name, install=INSTALL)
        cls = getattr(module, "CosyVoice2", None)
        if (
            cls is None
            or "prompt_speech_16k" in inspect.signature(cls.add_zero_shot_spk).parameters
        ):
            raise EngineUnavailable(
                "this CosyVoice checkout predates the CosyVoice2 prompt_wav API",
                hint="update the checkout (git pull) to a 2025 or later version",
            )
        device = check_device(resolve_auto_device(self.device))
        fp16 = device.startswith("cuda") if self.fp16 is None else self.fp16
        with oom_guard("loading CosyVoice2"):
            try:
                self._model = cls(self.model_dir, load_jit=False, load_trt=False, fp16=fp16)
            except (OSError, RuntimeError, ValueError, AssertionError) as exc:
                raise ModelError(
                    f"CosyVoice2 could not load {self.model_dir}: {exc}",
                    hint="check AVATAR_TTS__*__MODEL points at a complete CosyVoice2-0.5B folder",
                    code="model_load_failed",
                ) from exc
        self._rate = int(getattr(self._model, "sample_rate", SAMPLE_RATE))
        self._speakers.clear()
        example = Path(module.__file__ or ".").resolve().parents[2] / EXAMPLE_VOICE[0]
        self._example = example if example.is_file() else None

    def _unload(self) -> None:
        self._model = None
        self._speakers.clear()
        free_cuda_memory()

    # --- TextToSpeech -------------------------------------------------------------------------

    def describe_voice(self, language: str, voice: VoiceRef | None) -> str:
        ref = reference_from_voice(voice)
        if ref is not None:
            return f"{self.name}:clone:{ref.label}"
        return f"{self.name}:{self.voice_file.stem if self.voice_file else 'example'}"

    def synthesize_stream(
        self, text: str, *, language: str = "en", voice: VoiceRef | None = None
    ) -> AsyncIterator[PcmAudio]:
        if primary_language(language) not in LANGUAGES:
            raise UnsupportedLanguage(
                f"CosyVoice2 speaks {', '.join(sorted(LANGUAGES))}, not {language!r}",
                hint="use the fast embedded voice for other languages",
            )
        clean = require_text(text)
        return self.stream(lambda cancel: self._speak(clean, voice, cancel), buffer=4)

    # --- engine thread ------------------------------------------------------------------------

    def _speak(
        self, text: str, voice: VoiceRef | None, cancel: threading.Event
    ) -> Iterator[PcmAudio]:
        cond = self.prepared(voice)
        speaker = self._register(cond)
        with oom_guard("CosyVoice2"):
            outputs = self._model.inference_zero_shot(
                text,
                cond.text,
                str(cond.path),
                zero_shot_spk_id=speaker,
                stream=self.stream_output,
                speed=1.0,
            )
            try:
                for output in outputs:
                    if cancel.is_set():
                        return
                    yield to_pcm(output["tts_speech"], self._rate, SAMPLE_RATE)
            except (RuntimeError, ValueError, KeyError, AssertionError) as exc:
                raise EngineFailed(f"CosyVoice2 failed to synthesize: {exc}") from exc
            finally:
                getattr(outputs, "close", lambda: None)()

    def prepared(self, voice: VoiceRef | None) -> Conditioning:
        """The cached conditioning for ``voice`` (prepared now if it is new). Blocking."""
        ref = reference_from_voice(voice) or self._default_reference()
        key = ConditioningKey(ref.profile_id, self.name, reference_digest(ref.audio, ref.text))
        return self.conditioning.get_or_create(key, lambda: self._prepare(ref))

    def _prepare(self, ref: Reference) -> tuple[PcmAudio, str, bool]:
        if not ref.text:
            raise AudioError(
                "the voice profile has no reference text, which CosyVoice2 needs",
                code="voice_reference_text_missing",
                hint="add the words spoken in the recording as the profile's reference text",
            )
        audio, trimmed = prepare_reference(ref.audio, SAMPLE_RATE, max_s=MAX_REFERENCE_S)
        return audio, " ".join(ref.text.split()), trimmed

    def _register(self, cond: Conditioning) -> str:
        """Have the library compute the prompt features once per conditioning (speaker id)."""
        speaker = f"avatar-{cond.key.name}"
        if speaker in self._speakers:
            return speaker
        with oom_guard("CosyVoice2 (preparing the voice)"):
            try:
                self._model.add_zero_shot_spk(cond.text, str(cond.path), speaker)
            except (RuntimeError, ValueError, AssertionError) as exc:
                raise EngineFailed(f"CosyVoice2 could not prepare the voice: {exc}") from exc
        self._speakers.add(speaker)
        return speaker

    def _forget_speaker(self, cond: Conditioning) -> None:
        speaker = f"avatar-{cond.key.name}"
        self._speakers.discard(speaker)
        spk2info = getattr(getattr(self._model, "frontend", None), "spk2info", None)
        if isinstance(spk2info, dict):
            spk2info.pop(speaker, None)

    def _default_reference(self) -> Reference:
        if self.voice_file is not None:
            return reference_from_file(self.voice_file)
        if self._example is None:
            raise AudioError(
                "no voice to speak with: CosyVoice2 clones a voice profile",
                code="voice_required",
                hint="choose a voice profile, or set AVATAR_TTS__HQ__VOICE to a reference WAV"
                " with its transcript in a .txt file beside it",
            )
        return reference_from_file(self._example, EXAMPLE_VOICE[1])
