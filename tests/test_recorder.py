"""Stored replies are whole: over the real WebSocket, with a client that reports playback the way
the browser's player does (every 250 ms and as pieces arrive, while the reply still streams in).

The LLM is scripted so each case has a known reply length; the voice is the real Piper model.
An interrupted turn keeps the whole audio sent and notes what was heard (text and position).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import time
import wave
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from avatar.storage import Conversations, TurnRow
from avatar.testing.fakes import ScriptedChat
from conftest import LiveServer, live_app, make_settings
from wsclient import ChatClient, connect

SENTENCE = "The harbour was quiet this morning, and the boats rocked slowly on the grey water."
PREBUFFER_S = 0.12  # as in static/js/player.js
REPORT_EVERY_S = 0.25


@pytest.fixture(scope="module")
def chat() -> ScriptedChat:
    return ScriptedChat(SENTENCE, interval_s=0.005)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_store, chat) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("recorder"), server={"preload": False})
    with live_app(settings, models=model_store, engines={"llm": chat}) as served:
        yield served


class BrowserLikeClient(ChatClient):
    """Plays reply pieces on a simulated audio clock and reports the position like player.js:
    at once when a piece arrives and every 250 ms, all while later pieces are still coming."""

    def __init__(self, ws: Any) -> None:
        super().__init__(ws)
        self.turn_id: str | None = None
        self.pieces: list[tuple[float, float]] = []  # (start on the clock, duration s)
        self.sent_bytes: dict[str, int] = {}
        self.rate = 0
        self.reports: list[float] = []

    def played_ms(self) -> float:
        now = time.monotonic()
        return 1000 * sum(max(0.0, min(d, now - s)) for s, d in self.pieces)

    def on_audio(self, event: dict[str, Any]) -> None:
        pcm = base64.b64decode(event["data"])
        self.rate = event["sample_rate"]
        self.sent_bytes[event["turn_id"]] = self.sent_bytes.get(event["turn_id"], 0) + len(pcm)
        if event["turn_id"] != self.turn_id:
            self.turn_id, self.pieces = event["turn_id"], []
        now = time.monotonic()
        start = max(self.pieces[-1][0] + self.pieces[-1][1], now) if self.pieces else now
        self.pieces.append(
            (start + (PREBUFFER_S if not self.pieces else 0.0), len(pcm) / 2 / self.rate)
        )

    async def report(self) -> None:
        if self.turn_id:
            self.reports.append(self.played_ms())
            message = {"type": "playback", "turn_id": self.turn_id, "played_ms": self.reports[-1]}
            with contextlib.suppress(websockets.ConnectionClosed):
                await self.send_json(message)

    async def reporting(self) -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            await self.report()

    async def until(self, done: Any, limit_s: float = 120.0) -> dict[str, Any]:
        def seen(event: dict[str, Any]) -> bool:
            if event["type"] == "audio_response":
                self.on_audio(event)
                asyncio.get_running_loop().create_task(self.report())
            return bool(done(event))

        return await super().until(seen, limit_s)

    def sent_s(self, turn_id: str) -> float:
        return self.sent_bytes[turn_id] / 2 / self.rate


@contextlib.asynccontextmanager
async def browser_client(server: LiveServer) -> Any:
    async with connect(server) as ws:
        client = BrowserLikeClient(ws)
        reporter = asyncio.create_task(client.reporting())
        try:
            yield client
        finally:
            reporter.cancel()


async def stored_turns(server: LiveServer, session_id: str) -> list[TurnRow]:
    state = server.app.state.avatar  # type: ignore[attr-defined]
    async with state.db.read() as session:
        return list((await Conversations(session).get_session(session_id)).turns)


async def marked_interrupted(server: LiveServer, session_id: str) -> TurnRow:
    """The stored turn once marked (the server sends `interrupted` before it writes the mark)."""
    async with asyncio.timeout(30):
        while True:
            (turn,) = await stored_turns(server, session_id)
            if turn.interrupted:
                return turn
            await asyncio.sleep(0.05)


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getnframes() / wav.getframerate()


async def one_turn(server: LiveServer, chat: ScriptedChat, reply: str) -> tuple[Any, str, str]:
    chat.reply = reply
    async with browser_client(server) as client:
        started = await client.until(lambda e: e["type"] == "session_started")
        await client.send_json({"type": "text", "text": "Tell me about the harbour."})
        end = await client.until(lambda e: e["type"] == "turn_end")
        await asyncio.sleep(0.3)  # a few more reports arrive after the turn ended
    return client, str(started["session_id"]), str(end["turn_id"])


@pytest.mark.parametrize("sentences", [1, 3, 8])
async def test_uninterrupted_reply_is_stored_whole(server, chat, sentences: int) -> None:
    reply = " ".join([SENTENCE] * sentences)
    client, session_id, turn_id = await one_turn(server, chat, reply)
    sent_s = client.sent_s(turn_id)
    assert client.reports and min(client.reports) < sent_s * 1000  # reported mid-reply
    (turn,) = await stored_turns(server, session_id)
    assert not turn.interrupted and turn.heard_ms is None and turn.heard_text is None
    assert turn.assistant_text == reply
    assert turn.assistant_audio_s == pytest.approx(sent_s, abs=0.002)
    path = server.app.state.avatar.audio.path(turn.assistant_audio)  # type: ignore[attr-defined]
    assert wav_seconds(path.read_bytes()) == pytest.approx(sent_s, abs=0.002)


async def test_zip_export_holds_the_whole_reply(server, chat) -> None:
    client, session_id, turn_id = await one_turn(server, chat, " ".join([SENTENCE] * 5))
    async with httpx.AsyncClient(base_url=server.url, headers=server.auth) as api:
        response = await api.post(f"/api/conversations/{session_id}/export?format=zip")
        assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    (name,) = [n for n in archive.namelist() if n.endswith("-assistant.wav")]
    assert wav_seconds(archive.read(name)) == pytest.approx(client.sent_s(turn_id), abs=0.002)
    assert client.sent_s(turn_id) > 10


async def test_interrupted_mid_generation_keeps_all_audio_and_notes_what_was_heard(
    server, chat
) -> None:
    chat.reply = " ".join([SENTENCE] * 12)
    async with browser_client(server) as client:
        started = await client.until(lambda e: e["type"] == "session_started")
        await client.send_json({"type": "text", "text": "Tell me about the harbour."})
        await client.until(lambda e: e["type"] == "audio_response" and e["seq"] >= 1)
        await asyncio.sleep(1.0)
        await client.report()
        heard_ms = client.reports[-1]
        await client.send_json({"type": "interrupt"})
        interrupted = await client.until(lambda e: e["type"] == "interrupted")
        await client.until(lambda e: e["type"] == "turn_end")
    turn_id = interrupted["turn_id"]
    (turn,) = await stored_turns(server, str(started["session_id"]))
    assert turn.interrupted and turn.heard_text == interrupted["heard_text"]
    assert turn.heard_ms == pytest.approx(heard_ms, abs=1)
    assert 0 < turn.heard_ms < client.sent_s(turn_id) * 1000
    assert turn.assistant_audio_s == pytest.approx(client.sent_s(turn_id), abs=0.002)
    assert chat.reply.startswith(turn.assistant_text)
    assert len(turn.heard_text or "") < len(turn.assistant_text)


async def test_talked_over_after_generation_keeps_all_audio(server, chat) -> None:
    """The reply was sent in full and stored; the user interrupts while it is still playing."""
    chat.reply = " ".join([SENTENCE] * 4)
    async with browser_client(server) as client:
        started = await client.until(lambda e: e["type"] == "session_started")
        await client.send_json({"type": "text", "text": "Tell me about the harbour."})
        end = await client.until(lambda e: e["type"] == "turn_end")
        await client.report()
        await client.send_json({"type": "interrupt"})
        interrupted = await client.until(lambda e: e["type"] == "interrupted")
    turn = await marked_interrupted(server, str(started["session_id"]))
    sent_s = client.sent_s(str(end["turn_id"]))
    assert turn.interrupted and turn.heard_text == interrupted["heard_text"]
    assert turn.heard_ms is not None and 0 < turn.heard_ms < sent_s * 1000
    assert turn.assistant_text == chat.reply
    assert turn.assistant_audio_s == pytest.approx(sent_s, abs=0.002)
