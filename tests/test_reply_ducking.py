"""Instant barge-in on the virtual clock: the reply goes quiet at the first voiced frame, then is
cut (a turn) or carries on (a backchannel, a noise blip). See pipeline/ducking.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from avatar.api.ws.codec import encode
from avatar.pipeline.config import ConfigChange
from avatar.pipeline.ducking import Hearing, ReplyDucker
from avatar.pipeline.endpointing import EndpointState
from avatar.pipeline.events import (
    Interrupted,
    InterruptReason,
    ReplyAudio,
    ReplyQuieted,
    ReplyResumed,
    ResumeReason,
    SpeechStarted,
    Transcript,
    TurnEnd,
)
from avatar.testing.fakes import ScriptedChat, ScriptedStt, ToneTts
from avatar.testing.timeline import TurnHarness
from conftest import make_settings

REPLY = " ".join(["Once upon a time, there was a small robot who lived by the sea."] * 4)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[TurnHarness]:
    harness = TurnHarness(
        make_settings(tmp_path, server={"preload": False}),
        llm=ScriptedChat(REPLY, interval_s=0.02),
        tts=ToneTts(ms_per_word=250),
        stt=ScriptedStt("Wait, stop, I have a different question."),
    )
    async with harness:
        yield harness


async def start_reply(h: TurnHarness) -> str:
    await h.session.submit_text("Tell me a story.")
    turn_id = (await h.until(ReplyAudio)).turn_id
    await h.silence(0.3)
    return turn_id


async def test_speech_over_a_reply_quiets_it_at_once_then_cuts_it(h) -> None:
    turn_id = await start_reply(h)
    onset = h.clock.now()
    await h.speak(1.0)
    quiet = await h.until(ReplyQuieted)
    confirmed = await h.until(SpeechStarted)
    cut = await h.until(Interrupted)
    assert quiet.turn_id == turn_id == cut.turn_id and cut.reason is InterruptReason.BARGE_IN
    assert h.time_of(quiet) - onset <= 0.1  # the first voiced frame, before the confirmation
    assert h.time_of(quiet) < h.time_of(confirmed) < h.time_of(cut)
    await h.silence(1.0)
    await h.until(TurnEnd, lambda e: e.turn_id != turn_id)
    assert not h.of(ReplyResumed)  # a cut reply is never resumed


async def test_a_backchannel_quiets_the_reply_then_resumes_it(h) -> None:
    turn_id = await start_reply(h)
    onset = h.clock.now()
    await h.speak(0.4)  # "uh-huh"
    quiet = await h.until(ReplyQuieted)
    await h.silence(0.5)
    resumed = await h.until(ReplyResumed)
    assert resumed.turn_id == turn_id and resumed.reason is ResumeReason.BACKCHANNEL
    assert h.time_of(quiet) - onset <= 0.1
    # resumed after 400 ms of silence of its own, before the endpointer's hangover ends it
    assert 0.3 <= h.time_of(resumed) - (onset + 0.4) <= 0.45
    await h.wait(2.0)  # generation ends (its TurnEnd may come before the resume)
    (end,) = h.of(TurnEnd)
    assert end.turn_id == turn_id and not end.interrupted and not h.of(Interrupted)


async def test_a_pause_inside_the_users_sentence_does_not_bring_the_reply_back(h) -> None:
    turn_id = await start_reply(h)
    await h.speak(0.3)  # "Wait,"
    await h.silence(0.25)
    await h.speak(1.0)  # "stop, I have a different question."
    cut = await h.until(Interrupted)
    assert len(h.of(ReplyQuieted)) == 1 and not h.of(ReplyResumed) and cut.turn_id == turn_id


async def test_a_noise_blip_quiets_the_reply_then_resumes_it(h) -> None:
    turn_id = await start_reply(h)
    await h.speak(0.1)  # a click: never confirmed as speech
    await h.silence(0.1)
    resumed = await h.until(ReplyResumed)
    assert [q.turn_id for q in h.of(ReplyQuieted)] == [turn_id]
    assert resumed.reason is ResumeReason.NOISE and not h.of(SpeechStarted)
    await h.wait(2.0)  # generation ends (its TurnEnd may come before the resume)
    (end,) = h.of(TurnEnd)
    assert not end.interrupted


async def test_a_reply_that_keeps_hearing_itself_stops_being_quieted(h) -> None:
    turn_id = await start_reply(h)
    for _ in range(5):  # echo of the reply tripping the VAD again and again
        await h.speak(0.1)
        await h.silence(0.2)
    quiets, resumes = h.of(ReplyQuieted), h.of(ReplyResumed)
    assert len(quiets) == len(resumes) == 3 and {q.turn_id for q in quiets} == {turn_id}
    assert [r.reason for r in resumes] == [ResumeReason.NOISE] * 2 + [ResumeReason.ECHO]
    await h.speak(1.0)  # real speech still barges in, as before ducking existed
    assert (await h.until(Interrupted)).turn_id == turn_id


async def test_speech_with_nothing_playing_quiets_nothing(h) -> None:
    await h.speak(1.0)
    await h.silence(1.0)
    await h.until(TurnEnd)
    assert not h.of(ReplyQuieted) and not h.of(ReplyResumed)


async def test_push_to_talk_is_not_ducked(h) -> None:
    """The push-to-talk client cuts the reply itself when the key goes down; the server's part
    is unchanged: no quiet, no barge-in, a turn on ``end_utterance``."""
    await h.session.configure(ConfigChange(hands_free=False))
    turn_id = await start_reply(h)
    await h.speak(1.0)
    assert not h.of(ReplyQuieted) and not h.of(Interrupted)
    await h.session.end_utterance()
    question = await h.until(Transcript, lambda t: t.final)
    assert question.turn_id != turn_id and not h.of(ReplyQuieted)


async def test_a_reply_that_ends_while_quieted_is_resumed(h) -> None:
    turn_id = await start_reply(h)
    await h.until(TurnEnd)
    audio = h.of(ReplyAudio)
    plays_until = h.time_of(audio[0]) + sum(a.duration_s for a in audio)
    await h.wait(plays_until - 0.2 - h.clock.now())
    await h.speak(0.4)  # speech starts as the reply's last words play
    quiet = await h.until(ReplyQuieted)
    resumed = await h.until(ReplyResumed)
    assert resumed.turn_id == turn_id == quiet.turn_id
    assert resumed.reason is ResumeReason.REPLY_ENDED and not h.of(Interrupted)


def test_the_ducker_alone() -> None:
    ducker = ReplyDucker(resume_after_ms=64.0)
    voiced = Hearing(EndpointState.MAYBE_SPEECH, 32.0, 32.0, "t1")
    assert ducker.step(Hearing(EndpointState.IDLE, 0.0, 32.0, "t1")) is None
    assert ducker.step(voiced) == ReplyQuieted("t1")
    assert ducker.step(voiced) is None  # said once
    ducker.forget()  # cut: the client got `interrupted`
    assert ducker.step(Hearing(EndpointState.IDLE, 0.0, 32.0, None)) is None
    assert ducker.step(Hearing(EndpointState.SPEECH, 300.0, 32.0, None)) is None  # nothing plays


def test_the_wire_messages() -> None:
    assert encode(ReplyQuieted("t1")) == {"type": "reply_quiet", "turn_id": "t1"}
    assert encode(ReplyResumed("t1", ResumeReason.BACKCHANNEL)) == {
        "type": "reply_resume",
        "turn_id": "t1",
        "reason": "backchannel",
    }
