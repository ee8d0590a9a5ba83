"""Turn-taking timelines: a VoiceSession in process, scripted engines, a virtual clock.

Each test is a story told in virtual time (speak, stay silent, wait, report playback) and read
back as the session's typed events, in the manner of livekit/agents' interruption tests. The
WebSocket and the real models are covered end to end in test_ws_chat.py and test_barge_in.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from avatar.audio.pcm import PcmAudio
from avatar.pipeline.config import ConfigChange
from avatar.pipeline.events import (
    Error,
    Interrupted,
    InterruptReason,
    ReplyAudio,
    ReplyText,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    TurnEnd,
)
from avatar.testing.fakes import ScriptedChat, ScriptedStt, ToneTts
from avatar.testing.timeline import TurnHarness
from conftest import make_settings

REPLY = (
    "Once upon a time, there was a small robot. It lived in a quiet town by the sea. "
    "Every morning it walked to the harbour. It counted the boats and sang to the gulls. "
    "One day a storm came over the water."
)
QUESTION = "Wait, stop, I have a different question."


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[TurnHarness]:
    """A session replying with REPLY (a word every 20 ms, 250 ms of audio per word)."""
    harness = TurnHarness(
        make_settings(tmp_path, server={"preload": False}),
        llm=ScriptedChat(REPLY, interval_s=0.02),
        tts=ToneTts(ms_per_word=250),
        stt=ScriptedStt(QUESTION),
    )
    async with harness:
        yield harness


async def start_reply(h: TurnHarness) -> str:
    await h.session.submit_text("Tell me a story.")
    return (await h.until(ReplyAudio)).turn_id


def audio_of(h: TurnHarness, turn_id: str) -> list[ReplyAudio]:
    return [e for e in h.of(ReplyAudio) if e.turn_id == turn_id]


# --- barge-in -----------------------------------------------------------------------------------


async def test_speech_over_a_reply_interrupts_it_after_the_backchannel_window(h) -> None:
    turn_id = await start_reply(h)
    await h.speak(1.0)
    started = await h.until(SpeechStarted)
    cut = await h.until(Interrupted)
    end = await h.until(TurnEnd)
    await h.silence(1.0)
    question = await h.until(Transcript, lambda t: t.final)
    await h.until(TurnEnd)

    assert cut.turn_id == turn_id and cut.reason is InterruptReason.BARGE_IN
    # confirmed at onset + 250 ms, cut once 600 ms were voiced: 352 ms later on 32 ms frames
    assert 0.3 <= h.time_of(cut) - h.time_of(started) <= 0.4
    heard = cut.heard_text
    assert heard and REPLY.startswith(heard.rstrip(",.")) and heard != REPLY
    assert end.turn_id == turn_id and end.interrupted and end.text == cut.heard_text
    after = h.events[h.events.index(cut) :]
    assert not [e for e in after if isinstance(e, ReplyAudio | ReplyText) and e.turn_id == turn_id]
    assert question.text == QUESTION and question.turn_id != turn_id
    first = h.recorder.turns[0]
    assert first.interrupted and first.heard_text == cut.heard_text
    assert first.assistant_text.startswith(cut.heard_text.rstrip(",."))  # kept whole


async def test_a_backchannel_does_not_interrupt(h) -> None:
    turn_id = await start_reply(h)
    await h.silence(0.3)
    await h.speak(0.4)  # "uh-huh"
    await h.silence(1.0)
    end = await h.until(TurnEnd)
    assert end.turn_id == turn_id and not end.interrupted
    assert [type(e) for e in h.events if isinstance(e, SpeechStarted | SpeechStopped)] == [
        SpeechStarted,
        SpeechStopped,
    ]
    assert not h.of(Interrupted) and not h.of(Transcript)
    assert h.hub.stt.heard == []  # type: ignore[attr-defined]


async def test_a_backchannel_after_generation_ended_does_not_cut_playing_audio(h) -> None:
    turn_id = await start_reply(h)
    await h.until(TurnEnd)  # ~10 s of audio still playing at the client
    await h.speak(0.4)
    await h.silence(1.0)
    assert not h.of(Interrupted) and not h.of(Transcript)
    assert not h.recorder.turns[0].interrupted and turn_id


async def test_talking_over_audio_still_playing_after_generation_ended(h) -> None:
    turn_id = await start_reply(h)
    end = await h.until(TurnEnd)
    assert not end.interrupted  # generated and sent in full, still playing
    await h.session.report_playback(turn_id, 1000)
    await h.speak(1.0)
    cut = await h.until(Interrupted)
    await h.silence(1.0)
    await h.until(TurnEnd, lambda e: e.turn_id != turn_id)
    assert cut.turn_id == turn_id and cut.heard_text == "Once upon a time,"
    first = h.recorder.turns[0]
    assert first.interrupted and first.heard_text == "Once upon a time," and first.heard_ms == 1000
    assert first.assistant_text == REPLY  # the whole reply is kept


async def test_without_playback_reports_heard_follows_the_time_since_the_first_audio(h) -> None:
    turn_id = await start_reply(h)
    await h.until(TurnEnd)
    first_audio = h.time_of(audio_of(h, turn_id)[0])
    await h.wait(1.7 - (h.clock.now() - first_audio))  # 1.7 s of audio played ...
    await h.speak(0.7)  # ... plus the ~0.6 s it takes to decide this is a barge-in
    cut = await h.until(Interrupted)
    # 2.3 s: the first two chunks (4 + 5 words of 250 ms), none of the third's 9 words
    assert cut.heard_text == "Once upon a time, there was a small robot."


# --- client interrupt, playback reports, typed text ---------------------------------------------


async def test_playback_position_decides_what_was_heard(h) -> None:
    turn_id = await start_reply(h)
    await h.until(ReplyAudio, lambda e: e.seq >= 1)
    await h.session.report_playback(turn_id, 500)
    await h.session.interrupt(InterruptReason.CLIENT)
    cut = await h.until(Interrupted)
    assert cut.reason is InterruptReason.CLIENT
    assert cut.heard_text == "Once upon"  # 500 ms of 250 ms words


async def test_playback_reports_for_another_turn_are_ignored(h) -> None:
    turn_id = await start_reply(h)
    await h.until(ReplyAudio, lambda e: e.seq >= 1)
    await h.session.report_playback("not-this-turn", 500)
    await h.session.interrupt()
    cut = await h.until(Interrupted)
    sent = " ".join(e.text for e in audio_of(h, turn_id))
    assert cut.heard_text == sent.strip()  # no report: everything sent counts as heard


async def test_typed_text_during_a_reply_starts_a_new_turn(h) -> None:
    first = await start_reply(h)
    await h.session.submit_text("Something else.")
    cut = await h.until(Interrupted)
    second = await h.until(TurnEnd, lambda e: e.turn_id != first)
    assert cut.turn_id == first and cut.reason is InterruptReason.NEW_TURN
    assert not second.interrupted and second.text == REPLY


async def test_interrupt_when_nothing_plays_says_nothing(h) -> None:
    await h.session.interrupt()
    turn_id = await start_reply(h)
    await h.until(TurnEnd)
    await h.wait(30.0)  # all audio played
    await h.session.interrupt()
    await h.wait(1.0)
    assert not h.of(Interrupted) and turn_id


# --- stale generations --------------------------------------------------------------------------


async def test_output_of_a_cut_reply_never_follows_its_interrupted_event(tmp_path) -> None:
    """A slow TTS still working on the old reply when a new one starts: nothing of it leaks."""
    async with TurnHarness(
        make_settings(tmp_path, server={"preload": False}),
        llm=ScriptedChat(REPLY, interval_s=0.0),
        tts=ToneTts(ms_per_word=100, delay_s=0.3),
    ) as h:
        old = await start_reply(h)
        for _ in range(3):
            await h.session.submit_text("Again.")
            await h.wait(0.35)  # each new turn cuts the previous one mid-synthesis
        await h.until(TurnEnd, lambda e: not e.interrupted)
        cuts = h.of(Interrupted)
        assert [c.reason for c in cuts] == [InterruptReason.NEW_TURN] * 3 and cuts[0].turn_id == old
        for cut in cuts:
            later = h.events[h.events.index(cut) + 1 :]
            output = [e for e in later if isinstance(e, ReplyAudio | ReplyText)]
            assert not [e for e in output if e.turn_id == cut.turn_id]
        assert len(h.recorder.turns) == 4 and [t.interrupted for t in h.recorder.turns] == [
            True,
            True,
            True,
            False,
        ]


# --- push-to-talk -------------------------------------------------------------------------------


async def test_push_to_talk_waits_for_end_of_utterance(h) -> None:
    await h.session.configure(ConfigChange(hands_free=False))
    await h.silence(0.5)
    await h.speak(1.0)
    await h.silence(1.5)  # a long pause: no turn without the client's word
    assert not h.of(Transcript) and not h.of(SpeechStopped)
    await h.speak(0.5)
    await h.session.end_utterance()
    final = await h.until(Transcript, lambda t: t.final)
    end = await h.until(TurnEnd)
    assert final.text == QUESTION and end.metrics["endpointing_ms"] == 0.0
    (heard,) = h.hub.stt.heard  # type: ignore[attr-defined]
    assert heard.duration_s == pytest.approx(0.5 + 1.0 + 1.5 + 0.5, abs=0.05)  # the whole buffer


async def test_push_to_talk_without_speech_makes_no_turn(h) -> None:
    await h.session.configure(ConfigChange(hands_free=False))
    await h.silence(2.0)
    await h.session.end_utterance()
    await h.wait(2.0)
    assert not h.of(Transcript) and not h.of(TurnEnd)


# --- echo ---------------------------------------------------------------------------------------


async def test_the_assistant_hearing_itself_is_not_a_turn(tmp_path) -> None:
    """Speech over the reply that transcribes as the reply (speakers into the mic) is dropped;
    the same words long after playback are the user's and make a turn."""
    echo = "Once upon a time there was a small robot"
    async with TurnHarness(
        make_settings(tmp_path, server={"preload": False}),
        llm=ScriptedChat(REPLY, interval_s=0.02),
        tts=ToneTts(ms_per_word=250),
        stt=ScriptedStt([echo, echo]),
    ) as h:
        await start_reply(h)
        await h.speak(1.0)
        await h.until(Interrupted)  # barge-in goes by the VAD alone ...
        await h.silence(1.0)
        await h.wait(0.5)
        assert len(h.hub.stt.heard) == 1  # type: ignore[attr-defined]
        assert not h.of(Transcript)  # ... but the echo's transcript makes no turn
        (said,) = [e for e in h.of(Error) if e.code == "heard_own_voice"]  # and says so
        assert said.turn_id
        await h.wait(5.0)
        await h.speak(1.0)
        await h.silence(1.0)
        final = await h.until(Transcript, lambda t: t.final)
        assert final.text == echo


# --- the reply's first sound ---------------------------------------------------------------------


@pytest.mark.parametrize("speculate", [False, True])
async def test_a_reply_is_heard_from_its_first_sound(tmp_path, speculate: bool) -> None:
    """The silence a voice starts with is cut from a reply's first audio (the user would wait
    for it); the pauses before later chunks stay, they pace the speech."""
    from avatar.audio.edges import DIGITAL_SILENCE_DBFS, sound_span

    async with TurnHarness(
        make_settings(tmp_path, server={"preload": False}, turn={"speculate": speculate}),
        llm=ScriptedChat("Paris is the capital. It is in France.", interval_s=0.01),
        tts=ToneTts(ms_per_word=100, lead_s=0.06),
        stt=ScriptedStt("What is the capital of France?"),
    ) as h:
        await h.silence(0.5)
        await h.speak(1.6)
        await h.silence(1.5)
        await h.until(TurnEnd)
    pieces = [PcmAudio.from_s16le(a.pcm, a.sample_rate) for a in h.of(ReplyAudio)]
    assert len(pieces) >= 2
    spans = [sound_span(p.samples, p.sample_rate, DIGITAL_SILENCE_DBFS) for p in pieces]
    leads = [span[0] / pieces[0].sample_rate for span in spans if span is not None]
    assert leads[0] == 0.0
    assert all(lead == pytest.approx(0.06, abs=0.001) for lead in leads[1:])


# --- the clock ----------------------------------------------------------------------------------


@pytest.mark.parametrize("speculate", [False, True])
async def test_turn_metrics_follow_the_virtual_clock(tmp_path, speculate: bool) -> None:
    async with TurnHarness(
        make_settings(tmp_path, server={"preload": False}, turn={"speculate": speculate}),
        llm=ScriptedChat("Paris is the capital.", first_token_s=0.1, interval_s=0.01),
        tts=ToneTts(delay_s=0.05),
        stt=ScriptedStt("What is the capital of France?", delay_s=0.2),
    ) as h:
        await h.silence(0.5)
        await h.speak(1.6)
        await h.silence(1.0)
        end = await h.until(TurnEnd)
    m = end.metrics
    hangover = h.hub.settings.vad.silence_hangover_ms
    assert m["endpointing_ms"] == pytest.approx(hangover, abs=32)
    assert m["user_speech_ms"] == pytest.approx(1600, abs=32)
    assert m["stt_ms"] == pytest.approx(200, abs=10)
    # speculating, the reply starts at the first short pause, not at the end of the hangover
    started = h.hub.settings.turn.start_silence_ms if speculate else hangover
    assert m["llm_first_token_ms"] == pytest.approx(started + 200 + 100, abs=40)
    assert m["speculative"] == (1.0 if speculate else 0.0)
    assert m["endpoint_reason"] == "fallback_silence"  # no model: the plain silence timer
    # the first speakable text needs the whole sentence ("Paris is the capital."); a held reply
    # whose audio is ready before the turn ends goes out when it ends
    first_audio = max(m["first_text_ms"] + 50, m["endpointing_ms"])  # type: ignore[operator]
    assert m["voice_to_voice_ms"] == pytest.approx(first_audio, abs=20)
