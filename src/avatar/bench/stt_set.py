"""The fixed speech set of `avatar bench stt`: synthetic questions, real English, real Mandarin.

- ``questions``: the latency benchmark's questions in Piper joe and espeak-ng en-us, made as
  :func:`avatar.bench.latency.make_clips` makes them (0.4 s of silence, then the speech).
- ``human-en``: the two real recordings in the moonshine-voice wheel cut into sentences. Their
  texts are published: Samuel Beckett, *Worstward Ho* (1983), "Ever tried. Ever failed. No
  matter. Try again. Fail again. Fail better."; Charles Dickens, *A Tale of Two Cities* (1859),
  the opening paragraph, read to its end. The cut points lie in the pauses between clauses, found
  with whisper-base word timestamps (beam 5) and fixed here so every run cuts the same audio.
- ``human-zh``: ``shared/audio/zh/*.wav`` with the texts of its README.
- ``kokoro-zh``: the twelve everyday sentences of `avatar bench tts-zh` spoken by the embedded
  Mandarin TTS (Kokoro) in two voices, 0.4 s of silence before and 0.1 s after: two real clips are
  too few to compare Mandarin decodes (one character is three points of CER).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
import soxr

from avatar.audio.pcm import PcmAudio

if TYPE_CHECKING:
    from avatar.engines.hub import EngineHub
    from avatar.models.store import ModelStore

RATE = 16_000
KOKORO_ZH_VOICES = ("jf_gongitsune", "jf_alpha")  # the default Mandarin voice and a second one
BECKETT = [
    (0.00, 1.31, "Ever tried."),
    (1.31, 2.74, "Ever failed."),
    (2.74, 4.30, "No matter."),
    (4.30, 5.76, "Try again."),
    (5.76, 7.55, "Fail again."),
    (7.55, 9.96, "Fail better."),
]
TWO_CITIES = [
    (0.00, 4.71, "It was the best of times, it was the worst of times,"),
    (4.71, 8.20, "it was the age of wisdom, it was the age of foolishness,"),
    (8.20, 13.06, "it was the epoch of belief, it was the epoch of incredulity,"),
    (13.06, 16.70, "it was the season of Light, it was the season of Darkness,"),
    (16.70, 20.69, "it was the spring of hope, it was the winter of despair,"),
    (20.69, 24.25, "we had everything before us, we had nothing before us,"),
    (24.25, 28.55, "we were all going direct to Heaven, we were all going direct the other way"),
    (
        28.55,
        44.37,
        "in short, the period was so far like the present period, that some of its noisiest"
        " authorities insisted on its being received, for good or for evil, in the superlative"
        " degree of comparison only.",
    ),
]


@dataclass(frozen=True, slots=True)
class Sample:
    """One utterance of the set: mono float32 at 16 kHz and what was said."""

    group: str
    name: str
    language: str
    reference: str
    samples: np.ndarray

    @property
    def duration_s(self) -> float:
        return len(self.samples) / RATE


def read_16k(path: Path) -> np.ndarray:
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if rate != RATE:
        mono = soxr.resample(mono, rate, RATE)
    return np.ascontiguousarray(mono, dtype=np.float32)


def human_en() -> list[Sample]:
    """Beckett and Dickens, cut into sentences at fixed times."""
    from moonshine_voice import get_assets_path

    out = []
    for file, cuts in (("beckett.wav", BECKETT), ("two_cities.wav", TWO_CITIES)):
        audio = read_16k(get_assets_path() / file)
        for i, (start, end, text) in enumerate(cuts):
            clip = audio[int(start * RATE) : int(end * RATE)]
            out.append(Sample("human-en", f"{file[:-4]}#{i + 1}", "en", text, clip))
    return out


def human_zh(folder: Path) -> list[Sample]:
    """Every ``*.wav`` in ``folder`` whose text its README table gives."""
    readme = (folder / "README.md").read_text(encoding="utf-8")
    texts = dict(re.findall(r"^\|\s*([\w.-]+\.wav)\s*\|\s*([^|]+?)\s*\|", readme, re.M))
    return [
        Sample("human-zh", wav.name, "zh", texts[wav.name], read_16k(wav))
        for wav in sorted(folder.glob("*.wav"))
        if wav.name in texts
    ]


async def questions(hub: EngineHub) -> list[Sample]:
    """The latency benchmark's questions, spoken by Piper joe and espeak-ng as it speaks them."""
    from avatar.bench.latency import make_clips

    clips = await make_clips(hub)
    return [
        Sample("questions", f"{c.voice}#{i % 5 + 1}", "en", c.text, _pcm16(c.pcm))
        for i, c in enumerate(clips)
    ]


async def kokoro_zh(models: ModelStore) -> list[Sample]:
    """The `bench tts-zh` sentences in ``KOKORO_ZH_VOICES``, with silence around as a mic has it."""
    from avatar.bench.tts_zh import SENTENCES, speak
    from avatar.engines.tts.kokoro import DEFAULT_MODEL, KokoroTts

    model = models.path(DEFAULT_MODEL)
    out = []
    for voice in KOKORO_ZH_VOICES:
        engine = KokoroTts(model, voice=voice)
        engine.load()
        for i, text in enumerate(SENTENCES):
            audio, _, _ = await speak(engine, text)
            speech = soxr.resample(audio.samples, audio.sample_rate, RATE).astype(np.float32)
            lead, tail = np.zeros(int(0.4 * RATE)), np.zeros(int(0.1 * RATE))
            clip = np.concatenate([lead, speech, tail]).astype(np.float32)
            out.append(Sample("kokoro-zh", f"{voice}#{i + 1}", "zh", text, clip))
        getattr(engine, "shutdown", engine.unload)()
    return out


def _pcm16(pcm: bytes) -> np.ndarray:
    return PcmAudio.from_s16le(pcm, RATE).samples.astype(np.float32)
