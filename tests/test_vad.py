"""Silero VAD and offline speech segmentation on real human speech (moonshine-voice's assets)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
from moonshine_voice import get_assets_path

from avatar.audio.edges import frame_dbfs
from avatar.audio.pcm import PcmAudio
from avatar.audio.resample import resample
from avatar.engines.registry import create_engine
from avatar.engines.tts.piper import PiperTts
from avatar.engines.vad.segments import frame_probabilities, speech_segments
from avatar.engines.vad.silero import SileroVad
from avatar.models.store import ModelStore
from avatar.pipeline.endpointing import MAX_LAG_MS, EndpointerConfig, SpeechEnd
from avatar.pipeline.listener import Listener
from avatar.pipeline.utterance import FRAME, FRAME_MS
from avatar.settings import VadSettings
from conftest import say_en

# beckett.wav: "Ever tried." is spoken from ~0.35 s to ~1.22 s; the next phrase starts at ~1.9 s.
PHRASE = (0.30, 1.60)


@pytest.fixture(scope="module")
def vad(model_store: ModelStore) -> SileroVad:
    engine = create_engine("vad", "silero", VadSettings(), model_store)
    assert isinstance(engine, SileroVad)
    engine.load()
    return engine


@pytest.fixture(scope="module")
def beckett() -> PcmAudio:
    samples, rate = sf.read(get_assets_path() / "beckett.wav", dtype="float32")
    return PcmAudio(samples, rate)


def excerpt(audio: PcmAudio, start_s: float, end_s: float) -> PcmAudio:
    rate = audio.sample_rate
    return PcmAudio(audio.samples[int(start_s * rate) : int(end_s * rate)], rate)


def test_finds_speech_between_two_silences(vad: SileroVad, beckett: PcmAudio) -> None:
    phrase = excerpt(beckett, *PHRASE)
    audio = PcmAudio.silence(1.0, 16_000).concat(phrase).concat(PcmAudio.silence(1.0, 16_000))

    segments = speech_segments(audio, vad)

    assert len(segments) == 1
    start, end = segments[0]
    assert start == pytest.approx(1.0 + 0.35 - PHRASE[0], abs=0.2)
    assert end == pytest.approx(1.0 + 1.22 - PHRASE[0], abs=0.25)


def test_splits_phrases_at_pauses_and_merges_short_ones(vad: SileroVad, beckett: PcmAudio) -> None:
    split = speech_segments(beckett, vad, min_silence_ms=300)
    merged = speech_segments(beckett, vad, min_silence_ms=2000)

    assert len(split) >= 4  # six short phrases with ~0.7 s pauses between them
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(split, split[1:], strict=False))
    assert len(merged) == 1
    assert merged[0][0] == pytest.approx(split[0][0]) and merged[0][1] == pytest.approx(
        split[-1][1]
    )


def test_no_speech_in_silence_or_white_noise(vad: SileroVad) -> None:
    rng = np.random.default_rng(7)
    noise = PcmAudio((rng.standard_normal(3 * 16_000) * 0.1).astype(np.float32), 16_000)

    assert speech_segments(PcmAudio.silence(3.0, 16_000), vad) == []
    assert speech_segments(noise, vad) == []
    assert max(frame_probabilities(noise, vad)) < 0.5


def test_other_sample_rates_are_resampled(vad: SileroVad, beckett: PcmAudio) -> None:
    import soxr

    phrase = excerpt(beckett, *PHRASE)
    at_48k = PcmAudio(soxr.resample(phrase.samples, 16_000, 48_000).astype(np.float32), 48_000)
    padded = PcmAudio.silence(1.0, 48_000).concat(at_48k).concat(PcmAudio.silence(1.0, 48_000))

    segments = speech_segments(padded, vad)

    assert len(segments) == 1
    assert segments[0][0] == pytest.approx(1.05, abs=0.2)


def test_min_speech_drops_short_bursts(vad: SileroVad, beckett: PcmAudio) -> None:
    audio = PcmAudio.silence(1.0, 16_000).concat(excerpt(beckett, *PHRASE))

    assert speech_segments(audio, vad, min_speech_ms=2000) == []


def test_probability_is_stateful_and_reset_forgets(vad: SileroVad, beckett: PcmAudio) -> None:
    frame = np.ascontiguousarray(beckett.samples[16_000:16_512])
    silent = np.zeros(512, dtype=np.float32)
    vad.reset()
    fresh = vad.probability(silent)
    for start in range(6_000, 19_000, 512):  # prime the recurrent state with speech
        vad.probability(beckett.samples[start : start + 512])
    primed = vad.probability(silent)
    vad.reset()

    assert vad.probability(silent) == pytest.approx(fresh, abs=1e-6)
    assert primed != pytest.approx(fresh, abs=1e-6)
    assert 0.0 <= vad.probability(frame) <= 1.0


def test_read_only_frames_are_accepted(vad: SileroVad, beckett: PcmAudio) -> None:
    frame = beckett.samples[8_000:8_512].copy()
    frame.setflags(write=False)
    vad.reset()

    assert 0.0 <= vad.probability(frame) <= 1.0


def test_wrong_frame_size_is_rejected(vad: SileroVad) -> None:
    with pytest.raises(ValueError, match="512"):
        vad.probability(np.zeros(480, dtype=np.float32))


def test_instances_are_independent() -> None:
    a, b = SileroVad(), SileroVad()
    assert not a.loaded
    a.load()
    b.load()
    noise = np.random.default_rng(1).standard_normal(512).astype(np.float32) * 0.3
    for _ in range(5):
        a.probability(noise)
    assert b.probability(np.zeros(512, np.float32)) == pytest.approx(
        SileroVad().probability(np.zeros(512, np.float32)), abs=1e-6
    )


def test_the_listener_counts_the_pause_from_the_end_of_the_voice(
    vad: SileroVad, speaker: PiperTts
) -> None:
    """A spoken question in a quiet room (-66 dBFS noise): Silero releases ~60 ms after the
    voice ends, and the listener's silence counts from the voice, so the turn ends sooner; the
    cut is the same (its tail follows the VAD's release) and the lag is within the bound."""
    rng = np.random.default_rng(7)
    question = resample(say_en(speaker, "What is the capital of France?"), 16_000)
    audio = PcmAudio.silence(1.0, 16_000).concat(question).concat(PcmAudio.silence(1.5, 16_000))
    room = audio.samples + rng.normal(0, 0.0005, len(audio.samples)).astype(np.float32)

    def ends(loud_within_db: float) -> tuple[SpeechEnd, PcmAudio]:
        config = replace(
            EndpointerConfig.from_settings(VadSettings()), loud_within_db=loud_within_db
        )
        listener = Listener(config, lambda: vad)
        vad.reset()
        events = [e for _, found in listener.push(room) for e in found]
        end = next(e for e in events if isinstance(e, SpeechEnd))
        return end, listener.cut_utterance(end)

    (from_voice, cut), (from_release, plain_cut) = ends(30.0), ends(0.0)
    assert 0 < from_voice.lag_ms <= MAX_LAG_MS and from_release.lag_ms == 0.0
    assert from_voice.detected_ms == from_release.detected_ms - from_voice.lag_ms
    assert np.array_equal(cut.samples, plain_cut.samples)
    levels = frame_dbfs(room, FRAME)
    sound_end = int((from_voice.end_ms - from_voice.lag_ms) / FRAME_MS)
    assert levels[sound_end - 1] >= levels.max() - 30  # the last loud frame: the voice, ...
    assert levels[sound_end : sound_end + 3].max() < levels.max() - 30  # ... then quiet
