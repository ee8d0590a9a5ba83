"""The end-of-turn decision rules (pure: no audio, no models, no clocks)."""

from __future__ import annotations

import pytest

from avatar.errors import ConfigError
from avatar.pipeline.end_of_turn import EndOfTurnPolicy, TurnEvidence
from avatar.settings import load_settings

POLICY = EndOfTurnPolicy(
    min_silence_ms=200,
    fallback_silence_ms=2000,
    max_utterance_ms=30_000,
    starvation_ms=1000,
    complete_threshold=0.5,
    acoustic_weight=0.5,
)


def decide(**kw: object) -> tuple[bool, str | None]:
    d = POLICY.decide(TurnEvidence(**{"speech_ms": 1500.0, **kw}))  # type: ignore[arg-type]
    return d.end, d.endpoint_reason


def test_a_complete_turn_ends_at_the_first_short_silence() -> None:
    assert decide(silence_ms=200, acoustic=0.9, text=0.8) == (True, "model_complete")


def test_an_incomplete_turn_waits_for_the_fallback_silence() -> None:
    assert decide(silence_ms=700, acoustic=0.9, text=0.01) == (False, None)
    assert decide(silence_ms=2000, acoustic=0.9, text=0.01) == (True, "fallback_silence")


def test_the_models_are_not_asked_before_the_short_silence() -> None:
    assert not POLICY.ready_to_ask(199)
    assert decide(silence_ms=100, acoustic=1.0, text=1.0) == (False, None)


def test_fusion_is_a_weighted_mean_and_either_signal_may_be_missing() -> None:
    assert POLICY.fuse(0.8, 0.2) == pytest.approx(0.5)
    assert EndOfTurnPolicy(acoustic_weight=0.25).fuse(0.8, 0.2) == pytest.approx(0.35)
    assert POLICY.fuse(0.7, None) == 0.7
    assert POLICY.fuse(None, 0.3) == 0.3
    assert POLICY.fuse(None, None) is None


def test_without_any_model_only_the_fallback_ends_a_turn() -> None:
    assert decide(silence_ms=1999) == (False, None)
    assert decide(silence_ms=2000) == (True, "fallback_silence")


def test_the_threshold_is_inclusive_and_the_fused_value_is_reported() -> None:
    d = POLICY.decide(TurnEvidence(silence_ms=300, speech_ms=900, acoustic=0.6, text=0.4))
    assert d.end and d.probability == pytest.approx(0.5)
    d = POLICY.decide(TurnEvidence(silence_ms=300, speech_ms=900, acoustic=0.6, text=0.39))
    assert not d.end and d.probability == pytest.approx(0.495)


def test_forced_ends_win_over_the_models_in_order() -> None:
    assert decide(silence_ms=0, acoustic=0.0, push_to_talk_released=True) == (
        True,
        "push_to_talk",
    )
    assert decide(silence_ms=0, since_audio_ms=1000, acoustic=0.0) == (True, "starvation")
    assert decide(silence_ms=0, speech_ms=30_000, acoustic=0.0) == (True, "max_length")


def test_starvation_needs_speech_first() -> None:
    assert decide(silence_ms=0, speech_ms=0, since_audio_ms=5000) == (False, None)
    assert decide(silence_ms=0, since_audio_ms=999) == (False, None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"acoustic_weight": 1.5},
        {"complete_threshold": 1.0},
        {"complete_threshold": 0.0},
        {"min_silence_ms": -1},
        {"min_silence_ms": 500, "fallback_silence_ms": 400},
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        EndOfTurnPolicy(**kwargs)


def test_settings_build_the_policy() -> None:
    s = load_settings(turn={"fallback_silence_ms": 1500, "acoustic_weight": 0.3})
    policy = EndOfTurnPolicy.from_settings(s.turn, s.vad)
    assert policy.fallback_silence_ms == 1500
    assert policy.acoustic_weight == 0.3
    assert policy.max_utterance_ms == s.vad.max_utterance_ms


@pytest.mark.parametrize(
    "turn",
    [
        {"min_silence_ms": 800, "fallback_silence_ms": 500},
        {"complete_threshold": 1.2},
        {"acoustic_weight": -0.1},
        {"starvation_ms": 10},
    ],
)
def test_bad_turn_settings_are_a_clear_error(turn: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="AVATAR_TURN"):
        load_settings(turn=turn)
