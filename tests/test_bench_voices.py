"""The benchmarks' question voices say the same samples every run (avatar.bench.voices)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avatar.audio.pcm import PcmAudio
from avatar.bench.voices import QuestionVoices
from avatar.engines.hub import EngineHub


def said_twice(hub: EngineHub, voice: str) -> tuple[PcmAudio, PcmAudio]:
    first, second = QuestionVoices(hub), QuestionVoices(hub)
    try:
        one = asyncio.run(first.speak(voice, "Is water wet or dry?"))
        two = asyncio.run(second.speak(voice, "Is water wet or dry?"))
    finally:
        first.close()
        second.close()
    assert one.sample_rate == two.sample_rate == 16_000
    assert one.duration_s > 0.8
    return one, two


def test_piper_says_a_question_with_the_same_samples_twice(hub: EngineHub) -> None:
    # Piper samples noise for pitch and timing: the server's voice says it differently each time
    one, two = said_twice(hub, "piper-joe")
    assert np.array_equal(one.samples, two.samples)


def test_espeak_says_a_question_at_the_same_length_twice(hub: EngineHub) -> None:
    one, two = said_twice(hub, "espeak-en")  # only its frication noise is random
    assert abs(len(one.samples) - len(two.samples)) <= 16  # 1 ms


def test_an_unknown_voice_is_refused_by_name(hub: EngineHub) -> None:
    voices = QuestionVoices(hub)
    with pytest.raises(ValueError, match="unknown question voice 'kokoro'"):
        asyncio.run(voices.speak("kokoro", "Hello."))
