"""The hesitation set: questions with a 700 ms pause after a middle word, cut where it was said.

Each question is spoken whole (Piper joe and espeak-ng, as ``avatar bench latency`` does), its
words are timed by faster-whisper, and the audio is cut in the quietest 10 ms near the end of
the word before the ``|`` marker; the paused clip is the first half, 700 ms of silence, then the
rest. Two real Mandarin recordings (``shared/audio/zh``) are cut the same way, by characters.
Shared by the end-of-turn measurements (:mod:`avatar.bench.turn_scores`) and the latency bench.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from avatar.audio.pcm import PcmAudio
from avatar.audio.resample import resample
from avatar.bench.latency import QUESTIONS
from avatar.bench.voices import VOICES, QuestionVoices
from avatar.engines.hub import EngineHub

RATE = 16_000
PAUSE_S = 0.7

# "|" marks the pause: what comes before it is not a whole question. The first five are
# avatar.bench.latency.QUESTIONS; the set is split in two by position (see ``held_out``).
PAUSED_QUESTIONS = [
    "What is the capital | of France?",
    "How many days are there | in a week?",
    "Can you name a colour | of the sky?",
    "What do bees | make?",
    "Is water | wet or dry?",
    "What is the capital | of Japan?",
    "How many legs | does a spider have?",
    "Which planet is closest | to the sun?",
    "What is the tallest | mountain in the world?",
    "Who wrote the play | Romeo and Juliet?",
    "How many minutes are there | in an hour?",
    "What colour do you get when you mix | blue and yellow?",
    "What is the largest | ocean on Earth?",
    "Can you tell me | a short joke?",
    "What is the boiling point | of water?",
    "How far away | is the moon?",
    "What language | do people speak in Brazil?",
    "Why is the sky | blue?",
    "What time zone | is London in?",
    "Could you recommend | a good book?",
]
assert [q.replace(" |", "") for q in PAUSED_QUESTIONS[: len(QUESTIONS)]] == QUESTIONS

# Real human Mandarin (see shared/audio/zh/README.md): file, reference text, pause marked.
MANDARIN = [
    ("welcome.wav", "欢迎大家来体验|达摩院推出的语音识别模型"),
    ("hope.wav", "希望你以后|能够做的比我还好呦"),
]
_NOT_COUNTED = re.compile(r"[\W_]+")


@dataclass(frozen=True, slots=True)
class PausedClip:
    """One question, whole and cut at its pause (16 kHz)."""

    voice: str
    text: str  # with the "|" marker
    language: str
    first: PcmAudio
    rest: PcmAudio

    @property
    def held_out(self) -> bool:
        """Odd positions are never used to choose thresholds (Mandarin is held out too)."""
        return self.language != "en" or PAUSED_QUESTIONS.index(self.text) % 2 == 1

    @property
    def whole(self) -> PcmAudio:
        return self.first.concat(self.rest)

    def paused(self, pause_s: float = PAUSE_S) -> PcmAudio:
        return self.first.concat(PcmAudio.silence(pause_s, RATE)).concat(self.rest)


def units(text: str, language: str) -> int:
    """How many words (characters, for Chinese) ``text`` has, punctuation not counted."""
    plain = _NOT_COUNTED.sub(" ", unicodedata.normalize("NFKC", text)).strip()
    return len(plain.replace(" ", "")) if language == "zh" else len(plain.split())


def cut_sample(audio: PcmAudio, words: Sequence[Any], before: int, language: str) -> int:
    """Where to cut: the quietest 10 ms around the end of the ``before``-th timed unit.

    ``words`` are faster-whisper words (``.word``, ``.start``, ``.end`` in seconds).
    """
    counted = 0
    for i, word in enumerate(words):
        counted += units(word.word, language)
        if counted >= before and i + 1 < len(words):
            lo, hi = word.end - 0.08, words[i + 1].start + 0.08
            return _quietest(audio, lo, max(hi, word.end + 0.02))
    raise ValueError(f"no word boundary after {before} units in {[w.word for w in words]}")


def _quietest(audio: PcmAudio, lo_s: float, hi_s: float) -> int:
    step = RATE // 100
    lo = max(0, int(lo_s * RATE))
    hi = min(len(audio.samples) - step, int(hi_s * RATE))
    starts = list(range(lo, max(hi, lo + 1), step))
    energy = [float(np.square(audio.samples[s : s + step]).sum()) for s in starts]
    return starts[int(np.argmin(energy))] + step // 2


def timed_words(whisper: Any, audio: PcmAudio, language: str) -> list[Any]:
    """faster-whisper's words with times (``whisper`` is a ``faster_whisper.WhisperModel``)."""
    segments, _ = whisper.transcribe(
        audio.samples, language=language, word_timestamps=True, beam_size=1
    )
    return [w for s in segments for w in (s.words or [])]


def split(whisper: Any, voice: str, text: str, audio: PcmAudio, language: str) -> PausedClip:
    """Cut ``audio`` (the whole question, 16 kHz) at the pause ``text`` marks."""
    head = text.split("|")[0]
    cut = cut_sample(audio, timed_words(whisper, audio, language), units(head, language), language)
    first = PcmAudio(audio.samples[:cut], RATE)
    return PausedClip(voice, text, language, first, PcmAudio(audio.samples[cut:], RATE))


async def make_paused_clips(
    hub: EngineHub, whisper: Any, zh_dir: Path | None = None
) -> list[PausedClip]:
    """Every question in both voices (avatar.bench.voices), then the Mandarin recordings found
    in ``zh_dir``."""
    clips = []
    voices = QuestionVoices(hub)
    try:
        for voice in VOICES:
            for text in PAUSED_QUESTIONS:
                audio = await voices.speak(voice, text.replace(" |", ""))
                clips.append(split(whisper, voice, text, audio, "en"))
    finally:
        voices.close()
    for name, text in MANDARIN if zh_dir else []:
        audio = read_wav((zh_dir or Path()) / name)
        clips.append(split(whisper, "human-zh", text, audio, "zh"))
    return clips


def read_wav(path: Path) -> PcmAudio:
    """A mono sound file as 16 kHz audio."""
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    return resample(PcmAudio(np.ascontiguousarray(samples.mean(axis=1)), int(rate)), RATE)


def whisper_for_words(hub: EngineHub) -> Any:
    """A faster-whisper model for word timings (the STT engine decodes without them)."""
    from faster_whisper import WhisperModel

    path = hub.models.path(hub.settings.stt.model)
    return WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=2)
