"""The endpointing state machine, fed synthetic VAD probability sequences."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avatar.pipeline.endpointing import (
    MAX_LAG_MS,
    Endpointer,
    EndpointerConfig,
    EndpointEvent,
    EndpointState,
    SpeechDiscarded,
    SpeechEnd,
    SpeechStart,
    UtteranceTooLong,
)
from avatar.settings import VadSettings

FRAME = 32.0  # 512 samples at 16 kHz
CONFIG_FIELDS = {
    "threshold": 0.5,
    "min_speech_ms": 96,
    "silence_hangover_ms": 320,
    "max_utterance_ms": 3200,
    "pre_roll_ms": 64,
}
CONFIG = EndpointerConfig(**CONFIG_FIELDS)


def frames(*runs: tuple[float, int]) -> list[float]:
    """(probability, frame count) runs flattened into one probability per frame."""
    return [p for p, n in runs for _ in range(n)]


def feed(probs: list[float], config: EndpointerConfig = CONFIG) -> list[EndpointEvent]:
    endpointer = Endpointer(config)
    return [event for p in probs for event in endpointer.process(p, FRAME)]


def test_one_utterance_gives_one_start_and_one_end_at_the_right_offsets() -> None:
    events = feed(frames((0.05, 10), (0.9, 20), (0.05, 15)))

    assert events == [
        SpeechStart(offset_ms=10 * FRAME - 64, onset_ms=10 * FRAME, detected_ms=13 * FRAME),
        SpeechEnd(end_ms=30 * FRAME, speech_ms=20 * FRAME, detected_ms=40 * FRAME),
    ]


def test_pre_roll_is_clamped_to_the_stream_start() -> None:
    events = feed(frames((0.9, 10), (0.0, 10)))

    start = events[0]
    assert isinstance(start, SpeechStart)
    assert start.offset_ms == 0.0
    assert start.onset_ms == 0.0


def test_pre_roll_does_not_reach_back_into_the_previous_utterance() -> None:
    events = feed(frames((0.9, 10), (0.0, 10), (0.9, 10), (0.0, 10)))

    starts = [e for e in events if isinstance(e, SpeechStart)]
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert len(starts) == 2
    assert starts[1].onset_ms == 20 * FRAME
    assert starts[1].offset_ms == max(20 * FRAME - 64, ends[0].end_ms)


def test_a_short_first_word_before_the_speech_is_kept_by_the_default_pre_roll() -> None:
    """'So, what is ...': a 128 ms burst (a blip under min_speech_ms), 192 ms of pause, then
    speech. The utterance must start at the burst, not 300 ms before the confirmed onset."""
    config = EndpointerConfig.from_settings(VadSettings())
    burst_at = 20 * FRAME
    events = feed(frames((0.05, 20), (0.9, 4), (0.05, 6), (0.9, 30), (0.05, 20)), config)
    start = next(e for e in events if isinstance(e, SpeechStart))
    assert start.onset_ms == 30 * FRAME  # the burst itself did not confirm speech
    assert start.offset_ms <= burst_at
    assert any(isinstance(e, SpeechEnd) for e in events)


@pytest.mark.parametrize("blip_frames", [1, 2])
def test_blips_shorter_than_min_speech_are_discarded(blip_frames: int) -> None:
    events = feed(frames((0.0, 5), (0.95, blip_frames), (0.0, 20)))

    assert events == [SpeechDiscarded(onset_ms=5 * FRAME, speech_ms=blip_frames * FRAME)]


def test_speech_exactly_min_speech_long_is_a_turn() -> None:
    events = feed(frames((0.0, 5), (0.95, 3), (0.0, 20)))

    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]


def test_hangover_bridges_a_short_pause() -> None:
    pause = int(CONFIG.silence_hangover_ms / FRAME) - 1
    events = feed(frames((0.9, 10), (0.1, pause), (0.9, 10), (0.1, 20)))

    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    end = events[1]
    assert isinstance(end, SpeechEnd)
    assert end.end_ms == (20 + pause) * FRAME


def test_a_pause_as_long_as_the_hangover_splits_the_utterance() -> None:
    pause = int(CONFIG.silence_hangover_ms / FRAME)
    events = feed(frames((0.9, 10), (0.1, pause), (0.9, 10), (0.1, 20)))

    assert [type(e) for e in events] == [SpeechStart, SpeechEnd, SpeechStart, SpeechEnd]


def test_hysteresis_keeps_speech_between_the_two_thresholds() -> None:
    # 0.4 is below the start threshold (0.5) but above the release threshold (0.35).
    events = feed(frames((0.9, 5), (0.4, 30), (0.0, 20)))

    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    end = events[1]
    assert isinstance(end, SpeechEnd)
    assert end.end_ms == 35 * FRAME


def test_in_between_probabilities_do_not_start_speech() -> None:
    assert feed(frames((0.4, 50))) == []


def test_in_between_probabilities_do_not_resume_trailing_silence() -> None:
    events = feed(frames((0.9, 5), (0.2, 2), (0.4, 30)))

    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]


def test_max_utterance_forces_an_end_and_speech_continues_as_a_new_utterance() -> None:
    events = feed(frames((0.9, 150), (0.0, 20)))

    assert isinstance(events[1], UtteranceTooLong)
    assert events[1].end_ms == CONFIG.max_utterance_ms
    assert events[1].detected_ms == CONFIG.max_utterance_ms
    assert [type(e) for e in events] == [SpeechStart, UtteranceTooLong, SpeechStart, SpeechEnd]
    restart = events[2]
    assert isinstance(restart, SpeechStart)
    assert restart.offset_ms == CONFIG.max_utterance_ms


def test_force_end_ends_speech_at_the_last_voiced_frame() -> None:
    endpointer = Endpointer(CONFIG)
    for p in frames((0.9, 10), (0.0, 2)):
        endpointer.process(p, FRAME)

    assert endpointer.force_end() == [
        SpeechEnd(end_ms=10 * FRAME, speech_ms=10 * FRAME, detected_ms=12 * FRAME)
    ]
    assert endpointer.state is EndpointState.IDLE
    assert endpointer.force_end() == []


def test_force_end_while_unconfirmed_discards() -> None:
    endpointer = Endpointer(CONFIG)
    endpointer.process(0.9, FRAME)

    assert endpointer.force_end() == [SpeechDiscarded(onset_ms=0.0, speech_ms=FRAME)]


def test_speech_ms_grows_while_talking_and_resets_when_idle() -> None:
    endpointer = Endpointer(CONFIG)
    seen = []
    for p in frames((0.0, 3), (0.9, 5), (0.0, 2)):
        endpointer.process(p, FRAME)
        seen.append(endpointer.speech_ms)

    assert seen == [0, 0, 0, 32, 64, 96, 128, 160, 160, 160]
    for _ in range(20):
        endpointer.process(0.0, FRAME)
    assert endpointer.speech_ms == 0.0


def test_reset_returns_to_idle_at_time_zero() -> None:
    endpointer = Endpointer(CONFIG)
    for _ in range(10):
        endpointer.process(0.9, FRAME)
    endpointer.reset()

    assert endpointer.state is EndpointState.IDLE
    assert endpointer.now_ms == 0.0
    assert endpointer.process(0.0, FRAME) == []


def test_zero_min_speech_confirms_on_the_first_voiced_frame() -> None:
    config = EndpointerConfig(min_speech_ms=0, silence_hangover_ms=0, pre_roll_ms=0)
    events = feed([0.0, 0.9, 0.0], config)

    assert events == [
        SpeechStart(offset_ms=FRAME, onset_ms=FRAME, detected_ms=2 * FRAME),
        SpeechEnd(end_ms=2 * FRAME, speech_ms=FRAME, detected_ms=3 * FRAME),
    ]


# --- silence from the sound's end (frame levels) -------------------------------------------


def feed_levels(
    runs: list[tuple[float, float, int]], config: EndpointerConfig = CONFIG
) -> tuple[Endpointer, list[EndpointEvent]]:
    """(probability, level dBFS, frame count) runs, fed with their levels."""
    endpointer = Endpointer(config)
    events = [
        event
        for p, level, n in runs
        for _ in range(n)
        for event in endpointer.process(p, FRAME, level)
    ]
    return endpointer, events


def test_silence_counts_from_the_sound_not_from_the_vads_late_release() -> None:
    """The VAD stays voiced for 2 frames after the voice (-20 dBFS) fell to the room (-65): the
    pause is 2 frames longer than the VAD says, and the hangover ends the turn 2 frames sooner;
    the cut still ends at the VAD's release (soft word endings)."""
    voice = [(0.05, -65.0, 10), (0.9, -20.0, 20), (0.9, -65.0, 2), (0.05, -65.0, 15)]
    _, with_levels = feed_levels(voice)
    without = feed(frames((0.05, 10), (0.9, 22), (0.05, 15)))

    end, plain = with_levels[1], without[1]
    assert isinstance(end, SpeechEnd) and isinstance(plain, SpeechEnd)
    assert end.end_ms == plain.end_ms == 32 * FRAME
    assert end.lag_ms == 2 * FRAME and plain.lag_ms == 0.0
    assert end.detected_ms == plain.detected_ms - 2 * FRAME


def test_the_silence_so_far_includes_the_lag_while_the_pause_lasts() -> None:
    endpointer, _ = feed_levels([(0.9, -20.0, 10), (0.9, -70.0, 3), (0.05, -70.0, 1)])
    assert endpointer.state is EndpointState.TRAILING_SILENCE
    assert endpointer.silence_ms == 4 * FRAME
    assert endpointer.onset_ms == 0.0 and endpointer.speech_ms == 13 * FRAME


def test_the_quiet_since_the_sound_counts_before_the_vad_releases() -> None:
    """While the VAD still hears the last word, quiet_ms counts the frames since the sound
    ended; after its release it is the trailing silence (lag included)."""
    endpointer, _ = feed_levels([(0.9, -20.0, 10)])
    assert endpointer.quiet_ms == 0.0  # the sound goes on
    quiet = [(0.9, -20.0, 10), (0.9, -70.0, 1)]
    assert feed_levels(quiet)[0].quiet_ms == FRAME
    two = [(0.9, -20.0, 10), (0.9, -70.0, 2)]
    assert feed_levels(two)[0].quiet_ms == 2 * FRAME
    assert feed_levels([*two, (0.9, -25.0, 1)])[0].quiet_ms == 0.0  # a loud frame: sound again
    released, _ = feed_levels([*two, (0.05, -70.0, 1)])
    assert released.quiet_ms == released.silence_ms == 3 * FRAME
    assert feed_levels([(0.05, -70.0, 5)])[0].quiet_ms == 0.0  # nobody speaks
    plain = Endpointer(CONFIG)  # no levels fed: the VAD alone says when the sound ends
    for p in [0.9] * 10 + [0.9] * 2:
        plain.process(p, FRAME)
    assert plain.quiet_ms == 0.0


def test_the_lag_is_capped_so_a_long_quiet_ending_stays_speech() -> None:
    _, events = feed_levels([(0.9, -20.0, 10), (0.9, -70.0, 12), (0.05, -70.0, 15)])
    end = events[1]
    assert isinstance(end, SpeechEnd)
    assert end.lag_ms == MAX_LAG_MS


def test_noise_close_to_the_voice_counts_as_sound() -> None:
    """A poor signal-to-noise ratio (noise 25 dB under the voice): nothing is backdated."""
    _, events = feed_levels([(0.9, -20.0, 10), (0.9, -45.0, 3), (0.05, -45.0, 15)])
    end = events[1]
    assert isinstance(end, SpeechEnd)
    assert end.lag_ms == 0.0 and end.detected_ms == (13 + 10) * FRAME


def test_zero_loud_within_db_counts_from_the_release() -> None:
    config = EndpointerConfig(**{**CONFIG_FIELDS, "loud_within_db": 0.0})
    _, events = feed_levels([(0.9, -20.0, 10), (0.9, -70.0, 3), (0.05, -70.0, 15)], config)
    end = events[1]
    assert isinstance(end, SpeechEnd)
    assert end.lag_ms == 0.0


def test_a_pause_that_resumes_forgets_its_lag() -> None:
    """The user went on after a pause: the next pause measures its own lag."""
    endpointer, events = feed_levels(
        [(0.9, -20.0, 10), (0.9, -70.0, 2), (0.05, -70.0, 3), (0.9, -20.0, 10), (0.05, -70.0, 1)]
    )
    assert [type(e) for e in events] == [SpeechStart]
    assert endpointer.silence_ms == FRAME
    for event in endpointer.force_end():
        assert isinstance(event, SpeechEnd) and event.lag_ms == 0.0


def test_config_from_settings_and_validation() -> None:
    config = EndpointerConfig.from_settings(
        VadSettings.model_validate({"threshold": 0.6, "min_speech_ms": 100})
    )
    assert config.threshold == 0.6
    assert config.release_threshold == pytest.approx(0.45)
    assert config.min_speech_ms == 100
    with pytest.raises(ValueError):
        EndpointerConfig(threshold=0.5, negative_threshold=0.7)
    with pytest.raises(ValueError):
        Endpointer(CONFIG).process(0.5, 0)
    with pytest.raises(ValueError):
        EndpointerConfig(loud_within_db=-1)
    assert EndpointerConfig.from_settings(VadSettings()).loud_within_db == 30.0


@settings(max_examples=300, deadline=None)
@given(
    probs=st.lists(
        st.one_of(st.sampled_from([0.0, 0.2, 0.4, 0.5, 0.9, 1.0]), st.floats(0.0, 1.0)),
        max_size=400,
    ),
    min_speech=st.sampled_from([0, 32, 100, 250]),
    hangover=st.sampled_from([0, 32, 100, 500]),
    max_len=st.sampled_from([1000, 3000]),
    frame_ms=st.sampled_from([10.0, 30.0, 32.0]),
    levels=st.booleans(),
)
def test_events_alternate_and_offsets_are_monotone(
    probs: list[float],
    min_speech: int,
    hangover: int,
    max_len: int,
    frame_ms: float,
    levels: bool,
) -> None:
    config = EndpointerConfig(
        min_speech_ms=min_speech, silence_hangover_ms=hangover, max_utterance_ms=max_len
    )
    endpointer = Endpointer(config)
    events: list[EndpointEvent] = []
    for i, p in enumerate(probs):  # levels loosely follow the probability, with some noise
        level = -80 + 70 * p - 10 * (i % 3) if levels else None
        events += endpointer.process(p, frame_ms, level)
    events += endpointer.force_end()

    starts_ends = [e for e in events if not isinstance(e, SpeechDiscarded)]
    kinds = [isinstance(e, SpeechStart) for e in starts_ends]
    assert kinds == [i % 2 == 0 for i in range(len(kinds))]  # start, end, start, end, ...
    last = 0.0
    for event in starts_ends:
        if isinstance(event, SpeechStart):
            assert last <= event.offset_ms <= event.onset_ms <= event.detected_ms
            last = event.onset_ms
        else:
            assert last <= event.end_ms <= event.detected_ms
            assert event.speech_ms >= min_speech - 1e-6
            assert event.speech_ms <= max_len + 1e-6
            assert 0.0 <= event.lag_ms <= min(MAX_LAG_MS, event.speech_ms)
            assert levels or event.lag_ms == 0.0
            last = event.end_ms
    assert endpointer.state is EndpointState.IDLE


@settings(max_examples=200, deadline=None)
@given(runs=st.lists(st.tuples(st.integers(1, 7), st.integers(1, 10)), min_size=1, max_size=40))
def test_voiced_runs_shorter_than_min_speech_never_start_a_turn(
    runs: list[tuple[int, int]],
) -> None:
    # min_speech is 8 frames; every voiced run is at most 7 frames, then silence.
    config = EndpointerConfig(min_speech_ms=8 * FRAME)
    probs = frames(*(run for voiced, silent in runs for run in ((0.95, voiced), (0.0, silent))))

    events = feed(probs, config)

    assert not any(isinstance(e, SpeechStart | SpeechEnd) for e in events)
