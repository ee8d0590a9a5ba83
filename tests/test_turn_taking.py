"""End of turn as a decision, speculative replies and audio starvation, on the virtual clock.

Scripted engines (STT, chat with a scripted end-of-turn probability, the acoustic turn model)
and a :class:`TurnHarness`: each test speaks, pauses, and reads back the session's events. The
real models over the real WebSocket are in test_ws_turn_taking.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from avatar.pipeline.config import ConfigChange
from avatar.pipeline.events import (
    Interrupted,
    ReplyAudio,
    ReplyText,
    SpeechStopped,
    Transcript,
    TurnEnd,
)
from avatar.testing.fakes import ScriptedChat, ScriptedStt, ScriptedTurn, ScriptedTurnChat, ToneTts
from avatar.testing.timeline import FRAME_S, TurnHarness
from conftest import make_settings

QUESTION = "What is the capital of Japan?"
ANSWER = "Tokyo is the capital of Japan."
COMPLETE, INCOMPLETE = 0.9, 0.1


def harness(
    tmp_path: Path,
    *,
    acoustic: float | list[float] = COMPLETE,
    text: float | list[float] = COMPLETE,
    stt_delay_s: float = 0.1,
    answer: str = ANSWER,
    vad_lag_frames: int = 0,
    **turn: Any,
) -> TurnHarness:
    # both signals weighed, so the fusion is exercised (the defaults let the text decide alone)
    turn = {"acoustic_weight": 0.5, "complete_threshold": 0.5, **turn}
    settings = make_settings(tmp_path, server={"preload": False}, turn=turn)
    return TurnHarness(
        settings,
        stt=ScriptedStt(QUESTION, delay_s=stt_delay_s),
        llm=ScriptedTurnChat(answer, text, first_token_s=0.05, interval_s=0.01),
        tts=ToneTts(delay_s=0.03),
        turn=ScriptedTurn(acoustic, delay_s=0.05),
        vad_lag_frames=vad_lag_frames,
    )


def output_before(h: TurnHarness, when: float) -> list[Any]:
    kinds = Transcript | ReplyText | ReplyAudio | TurnEnd
    return [e for t, e in h.timeline if t < when and isinstance(e, kinds)]


# --- end of turn ---------------------------------------------------------------------------


async def test_a_complete_question_ends_at_the_short_silence(tmp_path) -> None:
    async with harness(tmp_path) as h:
        await h.speak(1.6)
        speech_end = h.clock.now()
        await h.silence(2.5)
        end = await h.until(TurnEnd)
        stopped = h.of(SpeechStopped)[0]
        m = end.metrics
        assert m["endpoint_reason"] == "model_complete"
        assert m["end_of_turn_probability"] == pytest.approx(0.9)
        # STT (100 ms) and the models began at the first silent frame (32 ms of silence, sent
        # as the speech ended), so their answer was in when the silence reached 300 ms (the
        # 10th frame, sent 288 ms after the speech)
        assert h.time_of(stopped) - speech_end == pytest.approx(9 * FRAME_S, abs=0.001)
        assert m["endpointing_ms"] == pytest.approx(300, abs=32)  # one frame's granularity
        assert end.text == ANSWER and not end.interrupted
        assert h.hub.turn.heard[0].duration_s > 1.6  # type: ignore[union-attr]  # the audio so far
        assert h.hub.llm.asked == [QUESTION]  # type: ignore[attr-defined]


async def test_after_a_turn_the_chat_model_reads_the_conversation_ahead(tmp_path) -> None:
    async with harness(tmp_path) as h:
        await h.speak(1.2)
        await h.silence(1.0)
        await h.until(TurnEnd)
        await h.wait(0.5)
        (conversation,) = h.hub.llm.read_ahead_of  # type: ignore[attr-defined]
        assert [(m.role, m.content) for m in conversation[1:]] == [
            ("user", QUESTION),
            ("assistant", ANSWER),
        ]  # the stored turn, so the next pass reads only the next words


async def test_the_end_of_turn_pass_reads_the_system_prompt_the_reply_will(tmp_path) -> None:
    """A conversation's first turn: the prompt is written for the language just heard before the
    pass, not after it (two prompts that differ from their 15th token on cost the chat model a
    second reading of the system prompt, ~250 ms on two cores, on every new conversation)."""
    async with harness(tmp_path) as h:
        await h.speak(1.2)
        await h.silence(1.0)
        await h.until(TurnEnd)
        chat = h.hub.llm
        (passed,), (replied,) = chat.asked_with, chat.prompts  # type: ignore[attr-defined]
        assert passed[0] == replied[0] and "English" in passed[0].content


async def test_the_language_heard_last_is_the_likely_one_next(tmp_path) -> None:
    async with harness(tmp_path) as h:
        for _ in range(2):
            await h.speak(1.2)
            await h.silence(1.0)
            await h.until(TurnEnd)
            await h.wait(3.0)
        assert h.hub.stt.likely == [None, "en"]  # type: ignore[attr-defined]


async def test_the_work_starts_before_the_turn_may_end(tmp_path) -> None:
    # a slow transcript (300 ms) from the first silent frame: the decision lands when it is in
    async with harness(tmp_path, stt_delay_s=0.3) as h:
        await h.speak(1.6)
        speech_end = h.clock.now()
        await h.silence(2.0)
        stopped = h.of(SpeechStopped)[0]
        assert h.time_of(stopped) - speech_end == pytest.approx(0.3, abs=0.035)
        # the transcribed audio ends 32 ms into the silence: nothing of the pause was waited for
        speech_and_silence_s = h.hub.stt.heard[0].duration_s  # type: ignore[attr-defined]
        assert speech_and_silence_s < h.session.listener.endpointer.config.pre_roll_ms / 1000 + 1.8


async def test_the_held_reply_starts_at_the_sound_s_end_while_the_vad_still_hears_it(
    tmp_path,
) -> None:
    # Silero goes on hearing a word for 2-3 frames after it ended: the pause counts from the sound
    async with harness(tmp_path, stt_delay_s=0.3, vad_lag_frames=3) as h:
        await h.speak(1.6)
        speech_end = h.clock.now()
        await h.silence(2.0)
        end = await h.until(TurnEnd)
        stopped = h.of(SpeechStopped)[0]
        # cut at the first quiet frame, three frames before the VAD released
        assert h.hub.stt.heard[0].duration_s == pytest.approx(1.6 + FRAME_S, abs=0.001)  # type: ignore[attr-defined]
        assert h.time_of(stopped) - speech_end == pytest.approx(0.3, abs=0.035)
        m = end.metrics
        assert m["speculative"] == 1.0 and m["speculations_wasted"] == 0.0
        assert m["endpoint_reason"] == "model_complete"


async def test_a_quiet_frame_inside_speech_drops_its_held_reply_at_the_next_loud_one(
    tmp_path,
) -> None:
    # a stop consonant's closure: one quiet frame, and the VAD hears speech throughout
    async with harness(tmp_path, vad_lag_frames=3) as h:
        await h.speak(0.8)
        await h.silence(FRAME_S)
        assert h.session.speculation.holding
        resumed = h.clock.now()
        await h.speak(0.8)
        assert not h.session.speculation.holding
        await h.silence(1.0)
        end = await h.until(TurnEnd)
        assert output_before(h, resumed) == [] and len(h.of(TurnEnd)) == 1
        assert len(h.of(SpeechStopped)) == 1  # the VAD never let go: one utterance
        assert end.metrics["speculations_wasted"] == 1.0
        heard = h.hub.stt.heard  # type: ignore[attr-defined]
        assert heard[-1].duration_s > 0.8 + FRAME_S + 0.8


async def test_starting_at_the_full_silence_is_a_setting(tmp_path) -> None:
    async with harness(tmp_path, stt_delay_s=0.3, start_silence_ms=200) as h:
        await h.speak(1.6)
        speech_end = h.clock.now()
        await h.silence(2.0)
        stopped = h.of(SpeechStopped)[0]
        assert h.time_of(stopped) - speech_end == pytest.approx(6 * FRAME_S + 0.3, abs=0.035)


async def test_a_pause_shorter_than_the_minimum_never_ends_the_turn(tmp_path) -> None:
    # the models answer "complete" within 150 ms, but the user goes on before 300 ms of silence
    async with harness(tmp_path, stt_delay_s=0.01) as h:
        await h.speak(1.0)
        await h.silence(8 * FRAME_S)  # 256 ms: past the start of the work, short of 300 ms
        assert h.session.speculation.holding and not h.of(SpeechStopped)
        resumed = h.clock.now()
        await h.speak(0.8)
        assert not h.session.speculation.holding  # dropped: the user went on
        await h.silence(1.0)
        end = await h.until(TurnEnd)
        assert output_before(h, resumed) == [] and len(h.of(TurnEnd)) == 1
        assert end.metrics["speculations_wasted"] == 1.0
        assert h.hub.stt.heard[1].duration_s > 1.0 + 0.256 + 0.8  # type: ignore[attr-defined]


async def test_a_comma_pause_after_a_whole_greeting_stays_one_turn(tmp_path) -> None:
    # "Hello, | can you hear me?": the models read "Hello" as complete within 130 ms, but a
    # 260 ms pause is under the 300 ms floor, so the user is not cut off
    async with harness(tmp_path, stt_delay_s=0.1) as h:
        await h.speak(0.5)
        await h.silence(0.26)
        resumed = h.clock.now()
        await h.speak(1.0)
        await h.silence(2.0)
        end = await h.until(TurnEnd)
        assert output_before(h, resumed) == [] and len(h.of(TurnEnd)) == 1
        assert end.metrics["endpoint_reason"] == "model_complete"
        assert end.metrics["speculations_wasted"] == 1.0


async def test_an_unfinished_sentence_waits_for_the_fallback_silence(tmp_path) -> None:
    async with harness(tmp_path, acoustic=COMPLETE, text=0.05) as h:  # fused 0.475: not yet
        fallback_s = h.hub.settings.turn.fallback_silence_ms / 1000
        await h.speak(1.0)
        speech_end = h.clock.now()
        await h.silence(fallback_s - 0.1)
        assert not h.of(SpeechStopped) and not output_before(h, h.clock.now())
        await h.silence(0.5)
        end = await h.until(TurnEnd)
        stopped = h.of(SpeechStopped)[0]
        assert end.metrics["endpoint_reason"] == "fallback_silence"
        assert h.time_of(stopped) - speech_end == pytest.approx(fallback_s, abs=0.04)
        # the reply held since the first pause is released at once: one STT call, nothing redone
        assert end.metrics["speculative"] == 1.0 and len(h.hub.stt.heard) == 1  # type: ignore[attr-defined]
        first_audio = h.of(ReplyAudio)[0]
        assert h.time_of(first_audio) == pytest.approx(h.time_of(stopped), abs=0.001)


async def test_speech_after_a_pause_continues_the_same_turn(tmp_path) -> None:
    async with harness(tmp_path, acoustic=[INCOMPLETE, COMPLETE], text=[0.2, 0.9]) as h:
        await h.speak(1.0)  # "What is the capital"
        await h.silence(0.7)
        assert h.session.speculation.holding  # a reply on "What is the capital" is held back
        resumed = h.clock.now()
        await h.speak(0.8)  # "of Japan?"
        await h.silence(1.0)
        end = await h.until(TurnEnd)
        await h.wait(5.0)
        assert output_before(h, resumed) == []  # the dropped reply sent nothing ...
        assert len(h.of(TurnEnd)) == 1 and len(h.of(Transcript)) == 1
        assert len(h.recorder.turns) == 1  # ... and stored nothing
        assert [m.role for m in h.session.context.history] == ["user", "assistant"]
        assert h.hub.llm.produced > len(ANSWER.split())  # type: ignore[attr-defined]  # it did work
        m = end.metrics
        assert m["endpoint_reason"] == "model_complete" and m["speculative"] == 1.0
        assert m["speculations_wasted"] == 1.0 and m["speculation_wasted_ms"] > 0
        assert h.hub.stt.heard[1].duration_s > 1.0 + 0.7 + 0.8  # type: ignore[attr-defined]
        counters = h.session.speculation.counters
        assert (counters.started, counters.hits, counters.wasted) == (2, 1, 1)


async def test_a_held_reply_is_released_at_once_without_a_second_transcription(tmp_path) -> None:
    async with harness(tmp_path, stt_delay_s=0.3) as h:
        await h.speak(1.2)
        await h.silence(2.0)
        end = await h.until(TurnEnd)
        assert len(h.hub.stt.heard) == 1  # type: ignore[attr-defined]
        transcript, stopped = h.of(Transcript)[0], h.of(SpeechStopped)[0]
        assert h.time_of(transcript) == h.time_of(stopped)  # held until the decision, then sent
        assert end.metrics["speculative"] == 1.0 and end.metrics["speculations_wasted"] == 0.0
        assert h.recorder.turns[0].user_text == QUESTION


async def test_without_speculation_the_reply_starts_at_the_decision(tmp_path) -> None:
    async with harness(tmp_path, speculate=False) as h:
        await h.speak(1.2)
        await h.silence(2.0)
        end = await h.until(TurnEnd)
        m = end.metrics
        assert m["endpoint_reason"] == "model_complete" and m["speculative"] == 1.0
        assert len(h.hub.stt.heard) == 1  # type: ignore[attr-defined]  # the transcript is reused
        assert m["llm_first_token_ms"] >= m["endpointing_ms"] + 50  # type: ignore[operator]


async def test_by_default_the_text_probability_decides_alone(tmp_path) -> None:
    settings = make_settings(tmp_path, server={"preload": False})
    assert settings.turn.acoustic_weight == 0.0
    stt = ScriptedStt(QUESTION, delay_s=0.1)
    chat = ScriptedTurnChat(ANSWER, [0.01, 0.6])  # "What is the capital" vs the whole
    async with TurnHarness(settings, stt=stt, llm=chat, turn=ScriptedTurn(COMPLETE)) as h:
        await h.speak(1.0)
        await h.silence(0.7)
        await h.speak(0.8)
        await h.silence(1.0)
        end = await h.until(TurnEnd)
        assert end.metrics["endpoint_reason"] == "model_complete"
        assert end.metrics["speculations_wasted"] == 1.0 and len(h.of(TurnEnd)) == 1
        assert h.hub.turn.heard == []  # type: ignore[union-attr]  # no weight: not asked


async def test_without_a_text_model_and_no_acoustic_weight_the_silence_timer_ends_turns(
    tmp_path,
) -> None:
    settings = make_settings(tmp_path, server={"preload": False})
    llm = ScriptedChat(ANSWER)  # no end-of-turn capability (a remote model, say)
    async with TurnHarness(
        settings, stt=ScriptedStt(QUESTION), llm=llm, turn=ScriptedTurn(COMPLETE)
    ) as h:
        await h.speak(1.0)
        await h.silence(1.5)
        end = await h.until(TurnEnd)
        assert end.metrics["endpointing_ms"] == pytest.approx(
            settings.vad.silence_hangover_ms, abs=32
        )
        assert h.hub.turn.heard == []  # type: ignore[union-attr]


async def test_models_off_is_the_plain_silence_timer(tmp_path) -> None:
    settings = make_settings(
        tmp_path, server={"preload": False}, turn={"engine": "", "use_text": False}
    )
    stt = ScriptedStt(QUESTION)
    async with TurnHarness(settings, stt=stt, llm=ScriptedTurnChat(ANSWER, 0.9)) as h:
        await h.speak(1.0)
        await h.silence(1.5)
        end = await h.until(TurnEnd)
        assert end.metrics["endpoint_reason"] == "fallback_silence"
        hangover = settings.vad.silence_hangover_ms
        assert end.metrics["endpointing_ms"] == pytest.approx(hangover, abs=32)
        assert h.hub.llm.asked == []  # type: ignore[attr-defined]


async def test_a_client_interrupt_during_a_held_reply_says_nothing(tmp_path) -> None:
    async with harness(tmp_path, acoustic=INCOMPLETE, text=INCOMPLETE) as h:
        await h.speak(1.0)
        await h.silence(0.5)
        assert h.session.speculation.holding
        await h.session.interrupt()
        await h.wait(1.0)
        assert not h.of(Interrupted) and not output_before(h, h.clock.now())
        assert h.session.speculation.counters.wasted == 1


# --- a client that stops sending -----------------------------------------------------------


@pytest.mark.parametrize("trailing_s", [0.0, 0.1])
async def test_a_client_that_stops_sending_gets_its_answer(tmp_path, trailing_s: float) -> None:
    async with harness(tmp_path, acoustic=INCOMPLETE, text=INCOMPLETE) as h:
        await h.speak(1.2)
        await h.silence(trailing_s)  # no trailing silence, or too little for a pause
        last_audio = h.clock.now()
        await h.wait(3.0)
        end = await h.until(TurnEnd)
        stopped = h.of(SpeechStopped)[0]
        starvation_s = h.hub.settings.turn.starvation_ms / 1000
        # counted from the last audio the client sent (the start of the last 32 ms frame)
        assert h.time_of(stopped) - last_audio == pytest.approx(starvation_s - FRAME_S, abs=0.002)
        assert end.metrics["endpoint_reason"] == "starvation" and end.text == ANSWER
        assert end.metrics["endpointing_ms"] >= starvation_s * 1000  # type: ignore[operator]


async def test_starvation_does_not_end_push_to_talk(tmp_path) -> None:
    async with harness(tmp_path) as h:
        await h.session.configure(ConfigChange(hands_free=False))
        await h.speak(1.0)
        await h.wait(3.0)
        assert not h.of(SpeechStopped) and not h.of(TurnEnd)
        await h.session.end_utterance()
        end = await h.until(TurnEnd)
        assert end.metrics["endpoint_reason"] == "push_to_talk"


async def test_end_utterance_in_hands_free_mode_ends_only_the_utterance_in_progress(
    tmp_path,
) -> None:
    async with harness(tmp_path, acoustic=INCOMPLETE, text=INCOMPLETE) as h:
        await h.session.end_utterance()  # nothing in progress: changes nothing
        await h.speak(1.0)
        await h.silence(2.5)
        first = await h.until(TurnEnd)
        await h.wait(3.0)  # the answer has played
        await h.speak(1.0)
        await h.session.end_utterance()
        second = await h.until(TurnEnd)
        assert first.metrics["endpoint_reason"] == "fallback_silence"
        assert second.metrics["endpoint_reason"] == "push_to_talk"


# --- barge-in with the models on -----------------------------------------------------------


async def test_barge_in_then_a_question_with_the_models_on(tmp_path) -> None:
    story = "Once upon a time a small robot lived by the sea and sang to the gulls."
    async with harness(tmp_path, answer=story) as h:
        await h.session.submit_text("Tell me a story.")
        first = (await h.until(ReplyAudio)).turn_id
        await h.speak(1.0)
        cut = await h.until(Interrupted)
        await h.silence(1.0)
        end = await h.until(TurnEnd, lambda e: e.turn_id != first)
        assert cut.turn_id == first and end.metrics["endpoint_reason"] == "model_complete"
        assert [t.interrupted for t in h.recorder.turns] == [True, False]
        assert h.hub.llm.asked == [QUESTION]  # type: ignore[attr-defined]


def test_the_latency_bench_reports_speculation_hits_and_waste() -> None:
    from avatar.bench.latency import TurnResult, speculation_summary

    spoken = {
        "speculative": 1.0,
        "speculations_wasted": 2.0,
        "speculation_wasted_ms": 300.0,
        "speculation_wasted_cpu_ms": 120.0,
    }
    results = [
        TurnResult("a", 700.0, {**spoken, "endpoint_reason": "model_complete"}),
        TurnResult("b", 2100.0, {"speculative": 0.0, "endpoint_reason": "fallback_silence"}),
    ]
    assert speculation_summary(results) == {
        "hits": 1.0,
        "wasted": 2.0,
        "wasted_ms": 300.0,
        "wasted_cpu_ms": 120.0,
        "turns": 2.0,
        "ended_by_model_complete": 1.0,
        "ended_by_fallback_silence": 1.0,
    }
    slow = TurnResult("b", 2100.0, {"endpoint_reason": "fallback_silence", "stt_ms": 90.0}, "Hi?")
    assert slow.record() == {
        "voice": "b",
        "text": "Hi?",
        "heard": "",
        "v2v_client_ms": 2100.0,
        "first_sound_client_ms": None,
        "stt_ms": 90.0,
        "endpoint_reason": "fallback_silence",
    }  # per turn in the JSON report: which question waited, and why


def test_the_latency_bench_hears_a_reply_at_its_first_sound() -> None:
    """A voice that starts with silence is heard later than its audio arrives: the bench adds
    that silence to the first-sound figure (Kokoro started each chunk with ~0.4 s of it)."""
    import base64

    import numpy as np

    from avatar.audio.pcm import PcmAudio
    from avatar.bench.latency import _silence_before_sound

    rate = 24_000
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(rate // 2) / rate)
    pcm = PcmAudio(np.concatenate([np.zeros(int(0.3 * rate)), tone]).astype(np.float32), rate)

    def event(audio: PcmAudio) -> dict[str, object]:
        data = base64.b64encode(audio.to_s16le()).decode()
        return {"type": "audio_response", "data": data, "sample_rate": rate}

    assert _silence_before_sound(event(pcm)) == (pytest.approx(0.3, abs=0.02), True)
    assert _silence_before_sound(event(PcmAudio.silence(0.2, rate))) == (
        pytest.approx(0.2),
        False,
    )


async def test_a_slow_session_is_not_a_quiet_client(tmp_path) -> None:
    """Idle time counts from the end of the last audio's processing (a loaded machine or slow
    streaming partials must not end an utterance by starvation while audio is still coming)."""
    from avatar.pipeline.turn_taking import TurnTaking
    from avatar.testing.clock import FakeClock

    clock = FakeClock()
    taking = TurnTaking(make_settings(tmp_path), acoustic=None, llm=None, clock=clock)
    with taking.receiving():
        await clock.advance(2.0)  # one chunk took 2 s to process
        assert taking.idle_ms() == 0.0
    await clock.advance(0.3)
    assert taking.idle_ms() == pytest.approx(300.0)


async def test_held_output_flushes_in_order_with_what_arrives_during_the_flush() -> None:
    from avatar.pipeline.speculation import HeldOutput

    sent: list[int] = []
    output = HeldOutput(held=True)

    async def deliver(n: int) -> None:
        sent.append(n)
        if n == 1:  # the reply goes on while the queue is being flushed
            await output.send(lambda: deliver(3))

    await output.send(lambda: deliver(1))
    await output.send(lambda: deliver(2))
    assert sent == [] and output.held
    await output.release()
    await output.send(lambda: deliver(4))
    assert sent == [1, 2, 3, 4] and not output.held
