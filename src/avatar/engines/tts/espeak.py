"""espeak-ng formant TTS through ctypes, using the library and data that espeakng-loader ships.

espeak-ng keeps its state in process globals (current voice, synth callback), so one
:class:`_EspeakLibrary` per process serialises every call under a lock; each engine instance
additionally runs its calls on its own single thread.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import espeakng_loader
import numpy as np
import numpy.typing as npt
import soxr

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import TtsCapabilities, VoiceRef
from avatar.engines.executor import ThreadedEngine
from avatar.engines.tts.language import (
    UnsupportedLanguage,
    normalize_language,
    primary_language,
    require_text,
    split_sentences,
)
from avatar.errors import EngineUnavailable
from avatar.models.store import ModelStore
from avatar.settings import TtsSlotSettings

SAMPLE_RATE = 22_050  # what espeak-ng reports; checked at load
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0
_PHONEMES_IPA = 0x02
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

# Language tags whose espeak-ng voice has another name; other tags match voice files directly.
ALIASES: dict[str, str] = {
    "en": "en-us",
    "zh": "cmn",
    "zh-cn": "cmn",
    "zh-sg": "cmn",
    "zh-tw": "cmn",
    "zh-hans": "cmn",
    "zh-hant": "cmn",
    "zh-hk": "yue",
    "no": "nb",
}


def available_voices(data_dir: Path) -> dict[str, str]:
    """Voice files under ``espeak-ng-data/lang``: lower-cased name -> espeak voice name."""
    return {p.name.lower(): p.name for p in (data_dir / "lang").rglob("*") if p.is_file()}


def resolve_voice(language: str, voices: dict[str, str]) -> str:
    """The espeak-ng voice for a language tag ('zh' -> 'cmn', 'pt-BR' -> 'pt-BR')."""
    tag = normalize_language(language)
    for candidate in (tag, primary_language(tag)):
        name = ALIASES.get(candidate, candidate)
        if name in voices:
            return voices[name]
    raise UnsupportedLanguage(
        f"espeak-ng has no voice for language {language!r}",
        hint="use an ISO 639-1 code such as en, zh, es, fr, de, ja, ko, it, pt, ru",
    )


class _EspeakLibrary:
    """The process-wide espeak-ng library, initialised once in synchronous mode."""

    _instance: _EspeakLibrary | None = None
    _instance_lock = threading.Lock()

    def __init__(self, lib_path: str, data_dir: str) -> None:
        self.lock = threading.Lock()
        self._lib = ctypes.CDLL(lib_path)
        self._declare()
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_dir.encode(), 0)
        if rate <= 0:
            raise EngineUnavailable(
                f"espeak-ng failed to initialise with data at {data_dir}",
                hint="reinstall espeakng-loader (pip install --force-reinstall espeakng-loader)",
            )
        self.sample_rate = int(rate)
        self._chunks: list[npt.NDArray[np.int16]] = []
        self._abort: threading.Event | None = None
        self._callback = _SynthCallback(self._collect)  # kept alive: espeak holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> _EspeakLibrary:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls(
                    espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
                )
            return cls._instance

    def _declare(self) -> None:
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p

    def _collect(self, wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int) -> int:
        if wav and count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 1 if self._abort is not None and self._abort.is_set() else 0  # 1 aborts

    def synth(self, voice: str, text: str, abort: threading.Event) -> npt.NDArray[np.float32]:
        """Speak ``text`` with ``voice``; returns float32 samples at ``sample_rate``."""
        with self.lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise UnsupportedLanguage(
                    f"espeak-ng cannot load its voice {voice!r}", hint="reinstall espeakng-loader"
                )
            self._chunks, self._abort = [], abort
            data = text.encode("utf-8") + b"\0"
            try:
                self._lib.espeak_Synth(
                    data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
                )
                pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            finally:
                self._chunks, self._abort = [], None
        return pcm.astype(np.float32) / 32768.0

    def phonemes(self, voice: str, text: str) -> str:
        """IPA phonemes of ``text`` read by ``voice``, clauses joined by spaces (no audio)."""
        with self.lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise UnsupportedLanguage(
                    f"espeak-ng cannot load its voice {voice!r}", hint="reinstall espeakng-loader"
                )
            buffer = ctypes.create_string_buffer(text.encode("utf-8"))
            cursor = ctypes.c_void_p(ctypes.addressof(buffer))
            clauses: list[str] = []
            while cursor.value:  # espeak moves the cursor one clause on; NULL at the end
                out = self._lib.espeak_TextToPhonemes(
                    ctypes.byref(cursor), _CHARS_UTF8, _PHONEMES_IPA
                )
                clauses.append((out or b"").decode("utf-8").strip())
        return " ".join(c for c in clauses if c)


class EspeakTts(ThreadedEngine):
    """espeak-ng: intelligible, robotic, 100+ languages, near-zero latency. One chunk per
    sentence."""

    name = "espeak-ng"

    def __init__(self, data_dir: Path | None = None) -> None:
        super().__init__()
        self.voices = available_voices(data_dir or Path(espeakng_loader.get_data_path()))
        languages = {primary_language(v) for v in self.voices} | set(ALIASES)
        self.capabilities = TtsCapabilities(
            sample_rate=SAMPLE_RATE, languages=frozenset(languages), streaming=True
        )
        self._lib: _EspeakLibrary | None = None

    @classmethod
    def from_settings(cls, cfg: TtsSlotSettings, models: ModelStore) -> EspeakTts:
        return cls()

    def _load(self) -> None:
        self._lib = _EspeakLibrary.get()

    def _unload(self) -> None:
        self._lib = None  # the library stays initialised for the process; it holds no weights

    def voice_for(self, language: str) -> str:
        return resolve_voice(language, self.voices)

    def describe_voice(self, language: str, voice: VoiceRef | None) -> str:
        label = f"espeak-ng:{self.voice_for(language)}"
        if voice is not None and voice.reference_audio is not None:
            return f"{label} (packaged voice; espeak-ng cannot clone voice profiles)"
        return label

    def synthesize_stream(
        self, text: str, *, language: str = "en", voice: VoiceRef | None = None
    ) -> AsyncIterator[PcmAudio]:
        name = self.voice_for(language)
        clean = require_text(text)
        return self.stream(lambda cancel: self._sentences(name, clean, cancel), buffer=2)

    def _sentences(self, voice: str, text: str, cancel: threading.Event) -> Iterator[PcmAudio]:
        assert self._lib is not None  # stream() loads before iterating
        for sentence in split_sentences(text):
            if cancel.is_set():
                return
            samples = self._lib.synth(voice, sentence, cancel)
            if self._lib.sample_rate != SAMPLE_RATE:
                samples = soxr.resample(samples, self._lib.sample_rate, SAMPLE_RATE)
            yield PcmAudio(samples.astype(np.float32, copy=False), SAMPLE_RATE)
