"""Sessions under load: admission limits, idle close, and clients that stop reading."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest
import websockets

from avatar.api.app import create_app
from avatar.engines.hub import EngineHub
from avatar.testing.fakes import ScriptedChat, ScriptedStt, ToneTts
from conftest import LiveServer, make_settings, serve_app
from wsclient import ChatClient, connect

LONG_REPLY = " ".join(["This sentence is spoken slowly for a long time."] * 120)


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory, model_store) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path_factory.mktemp("small"),
        server={"preload": False},
        max_sessions=3,
        max_sessions_per_client=3,
        session_idle_timeout_s=1.5,
        send_deadline_s=1.0,
    )
    hub = EngineHub(settings, model_store)
    hub.override("llm", ScriptedChat(LONG_REPLY, interval_s=0.0))
    hub.override("tts.fast", ToneTts(ms_per_word=1000))
    hub.override("stt", ScriptedStt("hello"))
    app = create_app(settings, hub)
    with serve_app(app, settings) as host:
        yield LiveServer(
            f"http://{host}", f"ws://{host}", settings.api_token.get_secret_value(), settings, app
        )
    hub.close()


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


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("http_500", "engine_server_error"),
        ("http_401", "engine_auth"),
        ("hang_before_first_token", "engine_timeout"),
        ("drop_after_k", "engine_stream_broken"),
    ],
)
async def test_llm_backend_faults_reach_the_client_typed_and_the_next_turn_works(
    tmp_path_factory: pytest.TempPathFactory, model_store, mode: str, code: str
) -> None:
    from avatar.engines.llm.openai_remote import OpenAIChat
    from avatar.testing.fake_openai import FakeMode, running_fake_openai, set_fake_mode

    settings = make_settings(tmp_path_factory.mktemp("faults"), server={"preload": False})
    hub = EngineHub(settings, model_store)
    hub.override("tts.fast", ToneTts(ms_per_word=50))
    with running_fake_openai(FakeMode(mode), drop_after=0) as base_url:
        hub.override(
            "llm",
            OpenAIChat(
                base_url=base_url,
                model="fake-model",
                connect_timeout_s=1,
                first_token_timeout_s=1.5,
                read_timeout_s=1,
            ),
        )
        app = create_app(settings, hub)
        with serve_app(app, settings) as host:
            server = LiveServer(
                f"http://{host}",
                f"ws://{host}",
                settings.api_token.get_secret_value(),
                settings,
                app,
            )
            async with connect(server) as ws:
                client = ChatClient(ws)
                await client.until(lambda e: e["type"] == "session_started")
                await client.send_json({"type": "text", "text": "Hello?"})
                error = await client.until(lambda e: e["type"] == "error", limit_s=20)
                assert error["code"] == code and error["turn_id"]
                set_fake_mode(base_url, FakeMode.OK)
                await client.send_json({"type": "text", "text": "Hello again?"})
                end = await client.until(
                    lambda e: e["type"] == "turn_end" and e["turn_id"] != error["turn_id"]
                )
                assert end["text"] and not end["interrupted"]
    hub.close()
