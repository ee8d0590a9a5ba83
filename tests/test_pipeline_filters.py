"""Transcript filters: STT hallucinations on non-speech, and AVATAR's own voice (echo)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from avatar.pipeline.echo import EchoGuard, echo_ratio
from avatar.pipeline.hallucinations import is_hallucination

# --- hallucinations ---------------------------------------------------------------------

ALWAYS = [
    "",
    "   ",
    ".",
    "...",
    "♪",
    "♪ la la la ♪",
    "[Music]",
    "(upbeat music)",
    "[BLANK_AUDIO]",
    "（笑）",
    "Subtitles by the Amara.org community",
    "字幕由Amara.org社区提供",
    "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
    "優優獨播劇場——YoYo Television Series Exclusive",
    "Please like and subscribe!",
    "I'm going to the store. I'm going to the store. I'm going to the store. "
    "I'm going to the store.",
    "you you you you you you you you you you",
    "谢谢谢谢谢谢谢谢谢谢",
]


@pytest.mark.parametrize("text", ALWAYS)
def test_always_dropped_even_in_clear_long_speech(text: str) -> None:
    assert is_hallucination(text, no_speech_probability=0.0, speech_ms=5000)


LIKELY = [
    "Thank you.",
    "Thanks for watching!",
    "Thank you for watching.",
    "you",
    "Bye.",
    "So.",
    "谢谢观看",
    "謝謝觀看。",
    "我们下期再见",
    "Thank you. Thank you. Thank you.",
]


@pytest.mark.parametrize("text", LIKELY)
def test_common_phrases_are_dropped_when_the_audio_was_probably_not_speech(text: str) -> None:
    assert is_hallucination(text, no_speech_probability=0.8)
    assert is_hallucination(text, speech_ms=200)
    assert is_hallucination(text, no_speech_probability=0.4, speech_ms=700)


@pytest.mark.parametrize("text", LIKELY)
def test_common_phrases_are_kept_in_clear_speech(text: str) -> None:
    assert not is_hallucination(text)
    assert not is_hallucination(text, no_speech_probability=0.1, speech_ms=900)
    assert not is_hallucination(text, no_speech_probability=0.4, speech_ms=1500)


@pytest.mark.parametrize(
    "text",
    [
        "Thank you, that was really helpful.",
        "What's the weather like in Paris tomorrow?",
        "Yes.",
        "No no no, I meant the other one.",
        "帮我打开字幕",
        "今天天气怎么样？",
        "(quietly) can you hear me?",
        "Okay.",
    ],
)
def test_real_speech_is_kept_even_when_the_model_doubts_it(text: str) -> None:
    assert not is_hallucination(text, no_speech_probability=0.9, speech_ms=200)


def test_annotations_around_real_speech_are_ignored() -> None:
    assert not is_hallucination("[Music] Turn the volume down please")
    assert is_hallucination("[Music] Thank you.", no_speech_probability=0.9)


# --- echo -------------------------------------------------------------------------------

REPLY = (
    "The weather in Paris tomorrow will be sunny with a high of twenty-four degrees, "
    "so it is a good day for a walk along the river."
)


def guard_playing(*texts: str) -> EchoGuard:
    guard = EchoGuard()
    for text in texts:
        guard.playing(text)
    return guard


def test_exact_echo() -> None:
    guard = guard_playing(REPLY)

    assert guard.is_echo("sunny with a high of twenty-four degrees")


def test_partial_echo_with_recognition_errors() -> None:
    guard = guard_playing(*REPLY.split(", "))

    assert guard.is_echo("the whether in pairs tomorrow will be sunny")
    assert guard.is_echo("so it's a good day for walk along the rivers")


def test_unrelated_speech_during_playback_is_not_echo() -> None:
    guard = guard_playing(REPLY)

    assert not guard.is_echo("stop, what about London instead?")
    assert not guard.is_echo("can you set a timer for ten minutes")


def test_chinese_echo_by_characters() -> None:
    guard = guard_playing("明天北京的天气晴朗，最高气温二十五度，", "适合出去散步。")

    assert guard.is_echo("最高气温二十五度")
    assert guard.is_echo("明天北京的天气情朗")  # one character misheard
    assert not guard.is_echo("帮我定一个十分钟的闹钟")
    assert not guard.is_echo("等一下，上海呢？")


def test_mixed_language_echo() -> None:
    guard = guard_playing("你好，我是AVATAR，your voice assistant。")

    assert guard.is_echo("我是 avatar your voice assistant")


def test_echo_window_keeps_only_recent_text() -> None:
    guard = EchoGuard(window_chars=60)
    guard.playing("The first sentence talks about elephants in the savanna.")
    guard.playing("Later we discuss programming languages and compilers in depth.")

    assert not guard.is_echo("elephants in the savanna")
    assert guard.is_echo("programming languages and compilers")


def test_text_stays_after_stop_until_the_next_reply() -> None:
    guard = guard_playing(REPLY)
    guard.stopped()

    assert not guard.active
    assert guard.is_echo("a walk along the river")

    guard.playing("Here is a new answer about cooking pasta.")
    assert guard.active
    assert not guard.is_echo("a walk along the river")
    assert guard.is_echo("about cooking pasta")

    guard.clear()
    assert not guard.is_echo("about cooking pasta")


def test_short_answers_repeating_the_question_are_not_echo() -> None:
    guard = guard_playing("Would you like coffee or tea?")

    assert not guard.is_echo("tea")
    assert not guard.is_echo("Tea, please.")
    assert guard.is_echo("would you like coffee")
    assert EchoGuard(min_tokens=1).is_echo("tea") is False  # nothing played yet


def test_nothing_is_echo_before_anything_played() -> None:
    guard = EchoGuard()

    assert not guard.is_echo("hello there")
    assert not guard.is_echo("")


@given(st.text(max_size=80))
def test_any_text_is_an_echo_of_itself(text: str) -> None:
    ratio = echo_ratio(text, text)

    assert ratio in (0.0, 1.0)
    assert (ratio == 1.0) == (echo_ratio(text, REPLY + " " + text) == 1.0)


@given(st.data())
def test_any_stretch_of_the_reply_is_echo(data: st.DataObject) -> None:
    words = REPLY.split()
    start = data.draw(st.integers(0, len(words) - 3))
    end = data.draw(st.integers(start + 3, len(words)))

    assert guard_playing(REPLY).is_echo(" ".join(words[start:end]))
