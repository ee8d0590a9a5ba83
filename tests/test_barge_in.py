"""Barge-in timelines with scripted engines: the reply stops, what was heard is kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from avatar.engines.tts.piper import PiperTts
from avatar.storage import Conversations
from avatar.testing.fakes import ScriptedChat, ScriptedStt, ToneTts
from conftest import LiveServer, live_app, say_en, scripted_settings
from wsclient import ChatClient, connect, silence, to_pcm16k

REPLY = (
    "Once upon a time, there was a small robot. It lived in a quiet town by the sea. "
    "Every morning it walked to the harbour. It counted the boats and sang to the gulls. "
    "One day a storm came over the water."
)


@pytest.fixture(scope="module")
def speech_pcm(speaker: PiperTts) -> bytes:
    audio = say_en(speaker, "Wait, stop, I have a different question.")
    return to_pcm16k(audio)


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory: pytest.TempPathFactory, model_store) -> Iterator[LiveServer]:
    engines = {
        "llm": ScriptedChat(REPLY, interval_s=0.02),
        "tts.fast": ToneTts(ms_per_word=250),
        "stt": ScriptedStt("Wait, stop, I have a different question."),
    }
    settings = scripted_settings(tmp_path_factory.mktemp("barge"))
    with live_app(settings, models=model_store, engines=engines) as server:
        yield server


async def _start_reply(client: ChatClient) -> str:
    await client.until(lambda e: e["type"] == "session_started")
    await client.send_json({"type": "text", "text": "Tell me a story."})
    first = await client.until(lambda e: e["type"] == "audio_response")
    return str(first["turn_id"])


async def test_user_speech_interrupts_and_heard_text_is_stored(fake_server, speech_pcm) -> None:
    async with connect(fake_server) as ws:
        client = ChatClient(ws)
        turn_id = await _start_reply(client)
        await client.stream(speech_pcm + silence(1.0), realtime=0.2)
        interrupted = await client.until(lambda e: e["type"] == "interrupted")
        end = await client.until(lambda e: e["type"] == "turn_end" and e["turn_id"] == turn_id)
        # the user's question becomes the next turn
        await client.until(lambda e: e["type"] == "transcript" and e["final"])
        await client.until(lambda e: e["type"] == "turn_end" and e["turn_id"] != turn_id)
    assert interrupted["turn_id"] == turn_id and interrupted["reason"] == "barge_in"
    heard = interrupted["heard_text"]
    assert heard and REPLY.startswith(heard.rstrip(".")[:20]) and len(heard) < len(REPLY)
    assert end["interrupted"] is True and end["text"] == heard
    cut = client.events.index(interrupted)
    assert not [
        e for e in client.events[cut:] if e["type"] == "audio_response" and e["turn_id"] == turn_id
    ]
    state = fake_server.app.state.avatar
    async with state.db.read() as session:
        sessions = await Conversations(session).list_sessions()
        stored = await Conversations(session).get_session(sessions.items[0].id)
    first = stored.turns[0]
    assert first.interrupted and first.heard_text == heard and first.heard_ms is not None
    assert first.assistant_text.startswith(heard.rstrip(".")) and len(first.assistant_text) > len(
        heard
    )


@pytest.fixture(scope="module")
def yes_pcm(speaker: PiperTts) -> bytes:
    return to_pcm16k(say_en(speaker, "Yes."))


async def test_the_reply_is_quieted_before_the_cut_and_resumed_after_a_backchannel(
    fake_server, speech_pcm, yes_pcm
) -> None:
    """Over the real WebSocket with the real VAD: `reply_quiet` precedes `interrupted` for
    speech that takes the turn, and is followed by `reply_resume` for a short "Yes."."""
    yes = yes_pcm
    async with connect(fake_server) as ws:
        client = ChatClient(ws)
        turn_id = await _start_reply(client)
        await client.stream(silence(0.3) + yes + silence(1.0), realtime=1.0)
        resumed = await client.until(lambda e: e["type"] == "reply_resume")
        assert not [e for e in client.events if e["type"] == "interrupted"]
        await client.stream(speech_pcm + silence(1.0), realtime=0.2)
        cut = await client.until(lambda e: e["type"] == "interrupted")
    events = client.events
    quiets = [i for i, e in enumerate(events) if e["type"] == "reply_quiet"]
    resumes = [i for i, e in enumerate(events) if e["type"] == "reply_resume"]
    assert {events[i]["turn_id"] for i in quiets + resumes} == {turn_id}
    assert resumed["reason"] in ("backchannel", "noise") and quiets[0] < events.index(resumed)
    # every quiet ends in a resume, but the last: the cut
    assert len(quiets) == len(resumes) + 1 and quiets[-1] < events.index(cut)
    assert all(q < r for q, r in zip(quiets, resumes, strict=False))
    assert cut["turn_id"] == turn_id and cut["reason"] == "barge_in"
