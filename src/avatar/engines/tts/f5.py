"""F5-TTS (SWivid/F5-TTS): fast zero-shot voice cloning by flow matching; 24 kHz; English, Chinese.

Install: ``pip install f5-tts`` (it brings its own torch stack and pins rich<14, so it is
not an extra of AVATAR's lock; see docs/GPU.md). Weights: a
local folder laid out like the hub's (``F5TTS_v1_Base/model_1250000.safetensors`` with its
``vocab.txt``, and a ``vocos`` folder with Vocos' ``config.yaml`` and ``pytorch_model.bin`` beside
or inside it), or, with ``AVATAR_MODELS__ALLOW_DOWNLOADS=true``, an architecture name
(``F5TTS_v1_Base``) the library fetches from the Hugging Face hub.

VRAM: about 1.6 GB measured by the F5-TTS maintainer for inference without the library's ASR
model (SWivid/F5-TTS#197: "the minimal GPU memory is like 2G ... it takes 1622M"); placement
budgets 3 GB so long sentences fit. It runs on CPU too, far slower than real time.

Library API used (f5-tts 1.1, ``src/f5_tts/api.py`` and ``src/f5_tts/infer/utils_infer.py``):
``F5TTS(model, ckpt_file, vocab_file, vocoder_local_path=..., device=..., hf_cache_dir=...)``
loads the DiT (``.ema_model``) and vocoder (``.vocoder``, ``.mel_spec_type``); ``infer_process(
ref_audio, ref_text, gen_text, model_obj, vocoder, mel_spec_type=..., ..., nfe_step, speed,
device)`` returns ``(wave, sample_rate, spectrogram)``. ``F5TTS.infer`` runs
``preprocess_ref_audio_text`` (clip to 12 s, trim silent edges, end the text with ". ") before
every ``infer_process``; this engine does that preparation once per voice profile
(:mod:`avatar.engines.tts.conditioning`) and calls ``infer_process`` per sentence.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
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
from avatar.errors import AudioError, EngineFailed, ModelError
from avatar.system.cuda import free_cuda_memory, oom_guard, resolve_auto_device

if TYPE_CHECKING:
    from avatar.models.store import ModelStore
    from avatar.settings import TtsSlotSettings

log = logging.getLogger(__name__)

INSTALL = "pip install f5-tts (in a GPU environment of its own; see docs/GPU.md)"
SAMPLE_RATE = 24_000
MAX_REFERENCE_S = 12.0  # preprocess_ref_audio_text clips longer references to 12 s
DEFAULT_ARCH = "F5TTS_v1_Base"
HUB_ARCHS = ("F5TTS_v1_Base", "F5TTS_Base", "E2TTS_Base")
LANGUAGES = frozenset({"en", "zh"})
# The library's own example voice (in the f5-tts wheel), used when no profile is given.
EXAMPLE_VOICE = (
    "infer/examples/basic/basic_ref_en.wav",
    "Some call me nature, others call me mother nature.",
)


@dataclass(frozen=True, slots=True)
class F5Files:
    """Where F5TTS loads from; empty/None fields let the library download (allow_downloads)."""

    arch: str
    ckpt_file: str
    vocab_file: str
    vocoder_dir: str | None


def _vocoder_near(folder: Path) -> Path | None:
    for candidate in (folder / "vocos", folder.parent / "vocos", folder / "vocos-mel-24khz"):
        if (candidate / "config.yaml").is_file() and (candidate / "pytorch_model.bin").is_file():
            return candidate
    return None


def resolve_f5_model(model: str | None, *, allow_downloads: bool) -> F5Files:
    """A local checkpoint file/folder, or a hub architecture name when downloads are allowed."""
    name = model or DEFAULT_ARCH
    path = Path(name).expanduser()
    if not path.exists():
        if name not in HUB_ARCHS:
            raise ModelError(
                f"F5-TTS model {name!r} is neither a local path nor a known architecture",
                hint=f"use a local checkpoint folder or one of {', '.join(HUB_ARCHS)}",
                code="model_missing",
            )
        if not allow_downloads:
            raise ModelError(
                f"F5-TTS {name} is not on this machine; it needs a download from the hub",
                hint="set AVATAR_MODELS__ALLOW_DOWNLOADS=true on a machine with internet, or"
                " point AVATAR_TTS__*__MODEL at a local checkpoint folder",
                code="model_not_packaged",
            )
        return F5Files(name, "", "", None)
    folder = path if path.is_dir() else path.parent
    ckpts = [path] if path.is_file() else sorted(folder.glob("model_*.safetensors"))
    ckpts = ckpts or sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.pt"))
    if len(ckpts) != 1:
        raise ModelError(
            f"F5-TTS folder {folder} holds {len(ckpts)} checkpoints; exactly one is needed",
            hint="point the model setting at the .safetensors (or .pt) file itself",
            code="model_invalid",
        )
    vocoder = _vocoder_near(folder)
    if vocoder is None and not allow_downloads:
        raise ModelError(
            f"no Vocos vocoder next to {folder} (a 'vocos' folder with config.yaml and"
            " pytorch_model.bin)",
            hint="copy charactr/vocos-mel-24khz there, or allow downloads",
            code="model_invalid",
        )
    vocab = folder / "vocab.txt"
    arch = folder.name if folder.name in HUB_ARCHS else DEFAULT_ARCH
    return F5Files(arch, str(ckpts[0]), str(vocab) if vocab.is_file() else "", _str(vocoder))


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def f5_reference_text(text: str) -> str:
    """The reference text as ``preprocess_ref_audio_text`` leaves it: ending in ". " or "。"."""
    clean = " ".join(text.split())
    if not clean:
        raise AudioError(
            "the voice profile has no reference text, which F5-TTS needs",
            code="voice_reference_text_missing",
            hint="add the words spoken in the recording as the profile's reference text",
        )
    if clean.endswith("。"):
        return clean
    return clean + (" " if clean.endswith(".") else ". ")


class _QuietProgress:
    """Stands in for the ``tqdm`` module the library draws progress bars with."""

    @staticmethod
    def tqdm(iterable: Iterable[Any], *args: Any, **kwargs: Any) -> Iterable[Any]:
        return iterable


def _quiet(*args: Any, **kwargs: Any) -> None:
    return None


class F5Tts(ThreadedEngine):
    """F5-TTS voice cloning (the ``fast`` cloning engine); one audio chunk per call."""

    name = "f5-tts"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "auto",
        voice: str | None = None,
        allow_downloads: bool = False,
        hf_cache_dir: Path | None = None,
        nfe_step: int = 32,
        speed: float = 1.0,
    ) -> None:
        super().__init__()
        self.capabilities = TtsCapabilities(
            SAMPLE_RATE, LANGUAGES, streaming=False, cloning=True, quality="fast"
        )
        self.files = resolve_f5_model(model, allow_downloads=allow_downloads)
        self.device = device
        self.voice_file = Path(voice).expanduser() if voice else None
        self.hf_cache_dir = hf_cache_dir
        self.nfe_step, self.speed = nfe_step, speed
        self.conditioning = ConditioningCache()
        self._tts: Any = None
        self._infer: Any = None
        self._device = "cpu"
        self._example: Path | None = None

    @classmethod
    def from_settings(cls, cfg: TtsSlotSettings, models: ModelStore) -> F5Tts:
        require_library("f5_tts", engine=cls.name, install=INSTALL)
        return cls(
            cfg.model,
            device=cfg.device,
            voice=cfg.voice,
            allow_downloads=models.allow_downloads,
            hf_cache_dir=models.cache_dir / "huggingface",
        )

    def set_conditioning_folder(self, folder: Path | None) -> None:
        """Keep prepared references under ``folder`` (``<data_dir>/conditioning``) across runs."""
        old, self.conditioning = self.conditioning, ConditioningCache(folder)
        old.close()

    def shutdown(self) -> None:
        super().shutdown()
        self.conditioning.close()

    # --- load / unload ------------------------------------------------------------------------

    def _load(self) -> None:
        api = import_library("f5_tts.api", engine=self.name, install=INSTALL)
        self._infer = import_library(
            "f5_tts.infer.utils_infer", engine=self.name, install=INSTALL
        ).infer_process
        self._device = resolve_auto_device(self.device)
        f = self.files
        with oom_guard("loading F5-TTS"):
            try:
                self._tts = api.F5TTS(
                    model=f.arch,
                    ckpt_file=f.ckpt_file,
                    vocab_file=f.vocab_file,
                    vocoder_local_path=f.vocoder_dir,
                    device=self._device,
                    hf_cache_dir=str(self.hf_cache_dir) if self.hf_cache_dir else None,
                )
            except (OSError, RuntimeError, ValueError, KeyError) as exc:
                raise ModelError(
                    f"F5-TTS could not load {f.ckpt_file or f.arch} on {self._device}: {exc}",
                    hint="check AVATAR_TTS__*__MODEL and AVATAR_TTS__*__DEVICE",
                    code="model_load_failed",
                ) from exc
        example = resources.files("f5_tts").joinpath(EXAMPLE_VOICE[0])
        self._example = Path(str(example)) if example.is_file() else None

    def _unload(self) -> None:
        self._tts = None
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
                f"F5-TTS speaks {' and '.join(sorted(LANGUAGES))}, not {language!r}",
                hint="use the fast embedded voice or CosyVoice2 for other languages",
            )
        clean = require_text(text)
        return self.stream(lambda cancel: self._speak(clean, voice, cancel), buffer=2)

    # --- engine thread ------------------------------------------------------------------------

    def _speak(
        self, text: str, voice: VoiceRef | None, cancel: threading.Event
    ) -> Iterator[PcmAudio]:
        cond = self.prepared(voice)
        if cancel.is_set():
            return
        tts = self._tts
        with oom_guard("F5-TTS"):
            try:
                wave, rate, _ = self._infer(
                    str(cond.path),
                    cond.text,
                    text,
                    tts.ema_model,
                    tts.vocoder,
                    mel_spec_type=tts.mel_spec_type,
                    show_info=_quiet,
                    progress=_QuietProgress,
                    nfe_step=self.nfe_step,
                    speed=self.speed,
                    device=self._device,
                )
            except (RuntimeError, ValueError, IndexError) as exc:
                raise EngineFailed(f"F5-TTS failed to synthesize: {exc}") from exc
        yield (
            PcmAudio.silence(0.0, SAMPLE_RATE) if wave is None else to_pcm(wave, rate, SAMPLE_RATE)
        )

    def prepared(self, voice: VoiceRef | None) -> Conditioning:
        """The cached conditioning for ``voice`` (prepared now if it is new). Blocking."""
        ref = reference_from_voice(voice) or self._default_reference()
        key = ConditioningKey(ref.profile_id, self.name, reference_digest(ref.audio, ref.text))
        return self.conditioning.get_or_create(key, lambda: self._prepare(ref))

    def _prepare(self, ref: Reference) -> tuple[PcmAudio, str, bool]:
        text = f5_reference_text(ref.text)
        audio, trimmed = prepare_reference(ref.audio, SAMPLE_RATE, max_s=MAX_REFERENCE_S)
        if trimmed:
            log.warning(
                "voice %s: reference cut to %.1f s for F5-TTS; its text may not match the audio",
                ref.label,
                audio.duration_s,
            )
        return audio, text, trimmed

    def _default_reference(self) -> Reference:
        if self.voice_file is not None:
            return reference_from_file(self.voice_file)
        if self._example is None:
            raise AudioError(
                "no voice to speak with: F5-TTS clones a voice profile",
                code="voice_required",
                hint="choose a voice profile, or set AVATAR_TTS__*__VOICE to a reference WAV"
                " with its transcript in a .txt file beside it",
            )
        return reference_from_file(self._example, EXAMPLE_VOICE[1])
