"""How a session picks a turn's language and script, on the virtual clock (scripted engines)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from avatar.pipeline.config import ConfigChange
from avatar.pipeline.events import ReplyText, Transcript, TurnEnd
from avatar.pipeline.language import with_chinese_script
from avatar.testing.fakes import ScriptedChat, ScriptedStt, ToneTts
from avatar.testing.timeline import TurnHarness
from conftest import make_settings

QUESTION_HANS = "欢迎大家来体验语音识别软件"  # what Whisper often writes, in Simplified
REPLY_HANS = "欢迎使用这个软件。"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[TurnHarness]:
    harness = TurnHarness(
        make_settings(tmp_path, server={"preload": False}),
        llm=ScriptedChat(REPLY_HANS, interval_s=0.02),
        tts=ToneTts(ms_per_word=250),
        stt=ScriptedStt(QUESTION_HANS, language="zh"),
    )
    async with harness:
        yield harness


@pytest.mark.parametrize(
    ("script", "heard", "reply"),
    [
        ("traditional", "歡迎大家來體驗語音識別軟體", "歡迎使用這個軟體。"),
        ("simplified", QUESTION_HANS, REPLY_HANS),
        (None, QUESTION_HANS, REPLY_HANS),
    ],
)
async def test_detected_chinese_is_written_as_the_user_reads(h, script, heard, reply) -> None:
    """The zh-TW interface sends chinese_script=traditional: detected Mandarin then comes back
    in Traditional characters (Taiwan wording), though the language itself is detected."""
    if script is not None:
        await h.session.configure(ConfigChange(chinese_script=script))
    await h.speak(1.5)
    await h.silence(1.0)
    final = await h.until(Transcript, lambda t: t.final)
    await h.until(TurnEnd)
    assert final.text == heard
    assert final.language == {"traditional": "zh-TW", "simplified": "zh-CN"}.get(script, "zh")
    assert "".join(e.token for e in h.of(ReplyText)) == reply


def test_with_chinese_script() -> None:
    assert with_chinese_script("zh", "traditional") == "zh-TW"
    assert with_chinese_script("zh", "simplified") == "zh-CN"
    assert with_chinese_script("zh", None) == "zh"
    assert with_chinese_script("en", "traditional") == "en"
    assert with_chinese_script("zh-CN", "traditional") == "zh-CN"  # a configured region wins


async def test_the_first_turn_is_heard_with_the_last_conversations_language(tmp_path) -> None:
    """Whisper trusts a doubtful detection of the likely language instead of decoding again
    padded: a new conversation takes the server's last one's (stored as zh-TW here)."""
    stt = ScriptedStt(QUESTION_HANS, language="zh")
    harness = TurnHarness(
        make_settings(tmp_path, server={"preload": False}),
        llm=ScriptedChat(REPLY_HANS, interval_s=0.02),
        tts=ToneTts(ms_per_word=250),
        stt=stt,
        likely_language="zh-TW",
    )
    async with harness as h:
        await h.speak(1.5)
        await h.silence(1.0)
        await h.until(TurnEnd)
        first_turn = len(stt.likely)
        await h.session.configure(ConfigChange(language="auto"))  # the user starts over
        await h.speak(1.5)
        await h.silence(1.0)
        await h.until(TurnEnd)
    assert stt.likely[0] == "zh"
    assert stt.likely[first_turn] is None  # a language set or reset by the user drops the guess
