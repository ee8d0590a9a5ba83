"""Sessions under load and under faults: admission limits, idle close, clients that stop reading,
and LLM backends that fail in every way the fake OpenAI server scripts (retries, /health)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets

from avatar.errors import EngineUnavailable
from avatar.storage.errors import StorageError
from avatar.testing.fake_openai import (
    DEFAULT_MODEL,
    DEFAULT_TOKENS,
    FakeMode,
    request_count,
    running_fake_openai,
    set_fake_mode,
)
from avatar.testing.fakes import ScriptedChat, ScriptedStt, ToneTts
from avatar.testing.processes import closed_port
from conftest import LiveServer, live_app, scripted_settings
from wsclient import ChatClient, connect


class FailingTts(ToneTts):
    """A TTS whose server is down."""

    async def synthesize_stream(self, text: str, **_: Any) -> AsyncIterator[Any]:
        raise EngineUnavailable("cannot reach the TTS server (scripted)")
        yield  # an async generator, like the real engines


LONG_REPLY = " ".join(["This sentence is spoken slowly for a long time."] * 120)


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory, model_store) -> Iterator[LiveServer]:
    settings = scripted_settings(
        tmp_path_factory.mktemp("small"),
        max_sessions=3,
        max_sessions_per_client=3,
        session_idle_timeout_s=1.5,
        send_deadline_s=1.0,
    )
    engines = {
        "llm": ScriptedChat(LONG_REPLY, interval_s=0.0),
        "tts.fast": ToneTts(ms_per_word=1000),
        "stt": ScriptedStt("hello"),
    }
    with live_app(settings, models=model_store, engines=engines) as server:
        yield server


def open_sessions(server: LiveServer) -> int:
    return server.app.state.avatar.sessions.open  # type: ignore[attr-defined,no-any-return]


async def wait_until(check, limit_s: float = 15.0) -> None:
    async with asyncio.timeout(limit_s):
        while not check():  # noqa: ASYNC110 - polls state owned by the server's thread
            await asyncio.sleep(0.05)


async def test_sessions_over_the_limit_are_closed_with_1013(small_server) -> None:
    await wait_until(lambda: open_sessions(small_server) == 0)
    async with connect(small_server) as a, connect(small_server) as b, connect(small_server) as c:
        for ws in (a, b, c):
            await ws.recv()
        async with connect(small_server) as extra:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await extra.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1013
        await a.send('{"type": "ping"}')  # the admitted sessions are unaffected
        assert '"pong"' in await a.recv()


async def test_a_history_that_cannot_be_read_still_opens_the_session(
    small_server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A new session asks the history for the last conversation's language; when the database
    fails, the session opens anyway (language detected) and the failure is logged."""

    async def unreadable() -> str | None:
        raise StorageError("the database is gone (scripted)")

    recorder = small_server.app.state.avatar.services.recorder
    monkeypatch.setattr(recorder, "last_language", unreadable)
    await wait_until(lambda: open_sessions(small_server) == 0)
    async with connect(small_server) as ws:
        client = ChatClient(ws)
        await client.until(lambda e: e["type"] == "session_started")
        await client.send_json({"type": "ping"})
        await client.until(lambda e: e["type"] == "pong")
    assert "could not read the last conversation's language" in caplog.text


async def test_idle_sessions_are_closed(small_server) -> None:
    async with connect(small_server) as ws:
        await ws.recv()
        with pytest.raises(websockets.ConnectionClosed) as info:
            async with asyncio.timeout(10):
                await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    await wait_until(lambda: open_sessions(small_server) == 0)


async def test_a_client_that_stops_reading_is_dropped_without_slowing_others(
    small_server, caplog: pytest.LogCaptureFixture
) -> None:
    await wait_until(lambda: open_sessions(small_server) == 0)
    async with connect(small_server, max_queue=1) as stalled, connect(small_server) as healthy:
        await stalled.recv()
        await stalled.send('{"type": "text", "text": "Talk for a long time."}')
        client = ChatClient(healthy)
        await client.until(lambda e: e["type"] == "session_started")
        # The stalled client never reads again; the server must give up on it, while the other
        # session (pinging all along, so it is not idle) answers promptly.
        async with asyncio.timeout(30):
            while open_sessions(small_server) != 1:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await stalled.send('{"type": "ping"}')  # writes, never reads: not idle
                await client.send_json({"type": "ping"})
                await client.until(lambda e: e["type"] == "pong", limit_s=5)
                await asyncio.sleep(0.2)
        assert open_sessions(small_server) == 1
    assert "stopped reading" in caplog.text


# --- engine faults: a fake OpenAI-compatible LLM backend (avatar.testing.fake_openai) ----------


@dataclass(frozen=True)
class Fault:
    """One way the LLM backend fails, what the client must be told, and how often it is asked."""

    mode: FakeMode
    code: str  # of the typed ``error`` event the turn ends with
    requests: int  # the backend gets for the turn: 2 = one retry, 1 = none
    script: dict[str, Any] = field(default_factory=dict)
    output_first: bool = False  # tokens reach the user before the failure (so: no retry)

    @property
    def name(self) -> str:
        extra = "-".join(f"{k}={v}" for k, v in self.script.items())
        return f"{self.mode.value}-{extra}" if extra else self.mode.value


FAULTS = [
    # permanent: asking again cannot help, so it is asked once
    Fault(FakeMode.HTTP_401, "engine_auth", 1),
    Fault(FakeMode.HTTP_400, "engine_bad_request", 1),
    Fault(FakeMode.MALFORMED_STREAM, "engine_bad_response", 1, output_first=True),
    # transient, nothing reached the user yet: one retry
    Fault(FakeMode.HTTP_500, "engine_server_error", 2),
    Fault(FakeMode.HTTP_429, "engine_rate_limited", 2),
    Fault(FakeMode.OOM, "engine_overloaded", 2),
    Fault(FakeMode.DROP_AFTER_K, "engine_stream_broken", 2, {"drop_after": 0}),
    Fault(
        FakeMode.DROP_AFTER_K, "engine_stream_broken", 2, {"drop_after": 0, "drop_abruptly": True}
    ),
    # transient, but a retry would double the wait the turn already spent on a deadline
    Fault(FakeMode.REFUSED, "engine_unavailable", 1),
    Fault(FakeMode.HANG_BEFORE_FIRST_TOKEN, "engine_timeout", 1),
    # output already reached the user: never asked again (the reply would start over)
    Fault(FakeMode.DROP_AFTER_K, "engine_stream_broken", 1, {"drop_after": 3}, output_first=True),
    Fault(FakeMode.OOM_MIDSTREAM, "engine_overloaded", 1, output_first=True),
    Fault(FakeMode.TRICKLE, "engine_timeout", 1, output_first=True),
]


class CountingChat:
    """Passes every call to ``engine`` and counts the replies asked for (a refused connection
    never reaches the fake, so its count is taken here)."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.calls = engine, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def stream_chat(self, messages: Any, options: Any) -> Any:
        self.calls += 1
        return self.engine.stream_chat(messages, options)


async def health_of(server: LiveServer) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, headers=server.auth, timeout=10) as http:
        response = await http.get("/health")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def ask(client: ChatClient, text: str) -> dict[str, Any]:
    """Send a typed turn; its turn_end (which follows its error event, if any)."""
    await client.send_json({"type": "text", "text": text})
    try:
        return await client.until(lambda e: e["type"] == "turn_end", limit_s=20)
    except TimeoutError:
        pytest.fail(f"no turn_end within 20 s; events: {[e['type'] for e in client.events]}")


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
async def test_llm_backend_faults_are_typed_retried_at_most_once_and_shown_in_health(
    tmp_path_factory: pytest.TempPathFactory, model_store, fault: Fault
) -> None:
    from avatar.engines.llm.openai_remote import OpenAIChat

    settings = scripted_settings(tmp_path_factory.mktemp("faults"))
    port = closed_port()
    with contextlib.ExitStack() as backend:
        base_url = backend.enter_context(running_fake_openai(fault.mode, port=port, **fault.script))
        chat = CountingChat(
            OpenAIChat(
                base_url=base_url,
                model=DEFAULT_MODEL,
                connect_timeout_s=1,
                first_token_timeout_s=1.5,
                read_timeout_s=0.5,
            )
        )
        engines = {"tts.fast": ToneTts(ms_per_word=50), "llm": chat}
        with live_app(settings, models=model_store, engines=engines) as server:
            assert (await health_of(server))["status"] == "ok"
            async with connect(server) as ws:
                client = ChatClient(ws)
                await client.until(lambda e: e["type"] == "session_started")
                end = await ask(client, "Hello?")

                # a typed error event ends the turn; the session goes on
                errors = client.of("error")
                assert [e["code"] for e in errors] == [fault.code]
                assert errors[0]["turn_id"] == end["turn_id"]
                tokens = [e for e in client.of("llm_token") if e["turn_id"] == end["turn_id"]]
                assert bool(tokens) == fault.output_first
                # permanent errors are sent once, transient ones at most twice, and never again
                # once output reached the user
                assert chat.calls == fault.requests
                if fault.mode is not FakeMode.REFUSED:
                    assert await asyncio.to_thread(request_count, base_url) == fault.requests

                health = await health_of(server)
                assert health["status"] == "degraded"
                failing = health["models"]["llm"]["failing"]
                assert failing["code"] == fault.code and failing["failures"] == fault.requests
                assert any(p.startswith("engine llm failing") for p in health["problems"])
                assert health["models"]["tts.fast"]["failing"] is None

                # the backend recovers: the next turn works, asked once, and health is ok again
                if fault.mode is FakeMode.REFUSED:
                    backend.enter_context(running_fake_openai(FakeMode.OK, port=port))
                else:
                    await asyncio.to_thread(set_fake_mode, base_url, FakeMode.OK)
                calls = chat.calls
                again = await ask(client, "Hello again?")
                assert again["text"] == "".join(DEFAULT_TOKENS) and not again["interrupted"]
                assert [e["code"] for e in client.of("error")] == [fault.code]
                assert chat.calls == calls + 1
            health = await health_of(server)
            assert health["status"] == "ok", health["problems"]
            assert health["models"]["llm"]["failing"] is None


async def test_health_counts_failures_in_a_row_and_names_the_slot(
    tmp_path_factory: pytest.TempPathFactory, model_store
) -> None:
    settings = scripted_settings(tmp_path_factory.mktemp("health"))
    engines = {"llm": ScriptedChat("Fine words here.", interval_s=0.0), "tts.fast": FailingTts()}
    with live_app(settings, models=model_store, engines=engines) as server:
        async with connect(server) as ws:
            client = ChatClient(ws)
            await client.until(lambda e: e["type"] == "session_started")
            for n in (1, 2):
                await ask(client, f"Question {n}?")
                health = await health_of(server)
                assert health["status"] == "degraded"
                assert health["models"]["tts.fast"]["failing"]["failures"] == n
                assert health["models"]["llm"]["failing"] is None
