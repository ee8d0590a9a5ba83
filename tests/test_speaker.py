"""The voicefilter speaker encoder on real speech: moonshine-voice recordings and Piper's voice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from avatar.audio.pcm import PcmAudio
from avatar.engines.speaker.voicefilter import VoiceFilterEncoder
from avatar.engines.tts.piper import PiperTts
from avatar.errors import AudioError, EmptyAudio
from avatar.models.store import ModelStore
from avatar.settings import SpeakerSettings, TtsSlotSettings

pytestmark = pytest.mark.slow


def asset(name: str) -> PcmAudio:
    moonshine_voice = pytest.importorskip("moonshine_voice")
    path = Path(moonshine_voice.__file__).parent / "assets" / name
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return PcmAudio(np.ascontiguousarray(samples.mean(axis=1)), int(rate))


def halves(audio: PcmAudio) -> tuple[PcmAudio, PcmAudio]:
    mid = len(audio.samples) // 2
    return (
        PcmAudio(audio.samples[:mid], audio.sample_rate),
        PcmAudio(audio.samples[mid:], audio.sample_rate),
    )


@pytest.fixture(scope="module")
def encoder(model_store: ModelStore) -> Iterator[VoiceFilterEncoder]:
    engine = VoiceFilterEncoder.from_settings(SpeakerSettings(), model_store)
    engine.load()
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
async def beckett(encoder: VoiceFilterEncoder) -> tuple[npt.NDArray[np.float32], ...]:
    first, second = halves(asset("beckett.wav"))
    return await encoder.embed(first), await encoder.embed(second)


async def piper_says(model_store: ModelStore, text: str) -> PcmAudio:
    piper = PiperTts.from_settings(TtsSlotSettings(engine="piper"), model_store)
    try:
        parts = [c async for c in piper.synthesize_stream(text)]
    finally:
        piper.shutdown()
    return PcmAudio(np.concatenate([p.samples for p in parts]), parts[0].sample_rate)


async def test_embedding_is_256d_and_unit_length(
    encoder: VoiceFilterEncoder, beckett: tuple[npt.NDArray[np.float32], ...]
) -> None:
    assert encoder.capabilities.dimensions == 256
    for vector in beckett:
        assert vector.shape == (256,) and vector.dtype == np.float32
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4


async def test_same_speaker_scores_high(beckett: tuple[npt.NDArray[np.float32], ...]) -> None:
    first, second = beckett
    assert float(first @ second) >= 0.8


async def test_other_speakers_score_lower(
    encoder: VoiceFilterEncoder,
    model_store: ModelStore,
    beckett: tuple[npt.NDArray[np.float32], ...],
) -> None:
    first, second = beckett
    same = float(first @ second)
    other_reader = await encoder.embed(halves(asset("two_cities.wav"))[0])  # 48 kHz: resampled
    joe = await encoder.embed(
        await piper_says(
            model_store, "The weather is lovely today, and we should go for a walk in the park."
        )
    )
    assert float(first @ other_reader) < same
    assert float(first @ joe) < same - 0.3
    assert float(second @ joe) < same - 0.3


async def test_too_short_audio_is_a_clear_error(encoder: VoiceFilterEncoder) -> None:
    clip = asset("beckett.wav")
    short = PcmAudio(clip.samples[: clip.sample_rate // 2], clip.sample_rate)
    with pytest.raises(AudioError) as info:
        await encoder.embed(short)
    assert info.value.code == "audio_too_short" and info.value.hint


async def test_silence_is_a_clear_error(encoder: VoiceFilterEncoder) -> None:
    with pytest.raises(EmptyAudio):
        await encoder.embed(PcmAudio.silence(3.0, 16_000))
