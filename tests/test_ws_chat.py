"""/ws/chat end to end over a real WebSocket with the real embedded models."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
import websockets

from avatar.engines.tts.piper import PiperTts
from conftest import TEST_TOKEN, say_en
from wsclient import ChatClient, connect, noise, silence, to_pcm16k


@pytest.fixture(scope="module")
def question_pcm(speaker: PiperTts) -> bytes:
    audio = say_en(speaker, "What is the capital of France?")
    return silence(0.5) + to_pcm16k(audio) + silence(1.5)


async def test_spoken_question_gets_a_spoken_answer(live_server, question_pcm: bytes) -> None:
    async with connect(live_server) as ws:
        client = ChatClient(ws)
        started = await client.until(lambda e: e["type"] == "session_started")
        assert started["input_sample_rate"] == 16_000
        await client.stream(question_pcm)
        end = await client.until(lambda e: e["type"] == "turn_end")
    finals = [e for e in client.of("transcript") if e["final"]]
    assert finals and "capital" in finals[0]["text"].lower()
    assert finals[0]["language"] == "en"
    tokens = client.of("llm_token")
    assert len(tokens) >= 2
    assert "paris" in "".join(t["token"] for t in tokens).lower()
    audio = client.of("audio_response")
    assert audio and audio[0]["sample_rate"] == 22_050
    assert len(base64.b64decode(audio[0]["data"])) > 2_000
    assert all(a["turn_id"] == end["turn_id"] for a in audio)
    metrics = end["metrics"]
    for key in (
        "endpointing_ms",
        "stt_ms",
        "llm_first_token_ms",
        "first_text_ms",
        "tts_first_audio_ms",
        "voice_to_voice_ms",
    ):
        assert metrics.get(key) is not None and metrics[key] >= 0, key
    assert end["interrupted"] is False and "paris" in end["text"].lower()


async def test_typed_text_and_binary_frames(live_server) -> None:
    async with connect(live_server) as ws:
        client = ChatClient(ws)
        await client.until(lambda e: e["type"] == "session_started")
        await client.stream(silence(0.3), binary=True)
        await client.send_json({"type": "text", "text": "Say hello in three words."})
        end = await client.until(lambda e: e["type"] == "turn_end")
    assert client.of("audio_response") and end["text"]


async def test_noise_and_silence_make_no_turn(live_server) -> None:
    async with connect(live_server) as ws:
        client = ChatClient(ws)
        await client.until(lambda e: e["type"] == "session_started")
        await client.stream(silence(2.0) + noise(3.0) + silence(2.0))
        await client.send_json({"type": "ping"})
        await client.until(lambda e: e["type"] == "pong")
        await asyncio.sleep(1.5)  # a turn, had one started, would have sent its transcript
        await client.send_json({"type": "ping"})
        await client.until(lambda e: e["type"] == "pong")
    kinds = {e["type"] for e in client.events}
    assert not kinds & {"transcript", "llm_token", "audio_response", "turn_end"}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "bad_json"),
        ('["a list"]', "bad_message"),
        ('{"type": "audio_chunk", "data": "%%%not-base64"}', "bad_audio"),
        ('{"type": "audio_chunk", "data": "AAEC"}', "bad_audio_format"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"type": "config", "tts_mode": "ultra"}', "invalid_message"),
        ('{"type": "text", "text": ""}', "invalid_message"),
    ],
)
async def test_protocol_abuse_gets_an_error_and_the_session_lives(live_server, raw, code) -> None:
    async with connect(live_server) as ws:
        client = ChatClient(ws)
        await client.until(lambda e: e["type"] == "session_started")
        await ws.send(raw)
        error = await client.until(lambda e: e["type"] == "error")
        assert error["code"] == code and error["message"]
        await client.send_json({"type": "ping"})
        await client.until(lambda e: e["type"] == "pong")


async def test_hq_mode_is_refused_while_unconfigured(live_server) -> None:
    async with connect(live_server) as ws:
        client = ChatClient(ws)
        await client.until(lambda e: e["type"] == "session_started")
        await client.send_json({"type": "config", "tts_mode": "hq"})
        error = await client.until(lambda e: e["type"] == "error")
    assert error["code"] == "engine_unavailable" and "hq" in error["message"]


async def test_oversized_frame_closes_with_1009(live_server) -> None:
    async with connect(live_server) as ws:
        await ws.recv()
        await ws.send(b"\0" * (2 << 20))
        with pytest.raises(websockets.ConnectionClosed) as info:
            for _ in range(10):
                await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


@pytest.mark.parametrize(
    ("headers", "query", "status", "code"),
    [
        ({}, "", 401, "missing_token"),
        ({"Authorization": "Bearer wrong-token-wrong-token"}, "", 401, "wrong_token"),
        ({}, "?token=" + TEST_TOKEN, 401, "token_in_query"),
        (
            {"Origin": "http://evil.example", "Authorization": "Bearer " + TEST_TOKEN},
            "",
            403,
            "origin_not_allowed",
        ),
    ],
)
async def test_a_refused_connection_says_why(live_server, headers, query, status, code) -> None:
    """Old clients send ?token=; browsers send Origin: each refusal names its reason."""
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(
            f"{live_server.ws_url}/ws/chat{query}", additional_headers=headers
        ):
            pass
    response = info.value.response
    assert response.status_code == status
    body = json.loads(response.body)
    assert body["code"] == code and body["status"] == status and body["detail"]
    assert response.headers["content-type"] == "application/problem+json"


async def test_cookie_login_works_for_browsers(live_server) -> None:
    host = live_server.url.removeprefix("http://")
    headers = {"Cookie": f"avatar_token={live_server.token}", "Origin": f"http://{host}"}
    async with connect(live_server, headers=headers) as ws:
        assert json.loads(await ws.recv())["type"] == "session_started"


async def test_unknown_voice_profile_is_refused_and_config_unchanged(live_server) -> None:
    async with connect(live_server) as ws:
        client = ChatClient(ws)
        await client.until(lambda e: e["type"] == "session_started")
        await client.send_json({"type": "config", "voice_profile_id": "no-such-profile"})
        error = await client.until(lambda e: e["type"] == "error")
        await client.send_json({"type": "config", "language": "en"})
        config = await client.until(lambda e: e["type"] == "config")
    assert error["code"] == "not_found"
    assert config["voice_profile_id"] is None and config["language"] == "en"


async def test_metrics_expose_stage_histograms(live_server, api) -> None:
    async with connect(live_server) as ws:
        client = ChatClient(ws)
        await client.until(lambda e: e["type"] == "session_started")
        await client.send_json({"type": "text", "text": "Say yes."})
        await client.until(lambda e: e["type"] == "turn_end")
    text = (await api.get("/metrics")).text
    assert 'avatar_turn_stage_seconds_count{stage="llm_first_token"}' in text
    assert "avatar_turn_voice_to_voice_seconds_bucket" in text
    async with httpx.AsyncClient(base_url=live_server.url) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401


async def test_streaming_stt_sends_partial_transcripts(
    tmp_path_factory, model_store, question_pcm: bytes
) -> None:
    """With Moonshine (a streaming engine) the client sees partials before the final text."""
    from avatar.testing.fakes import ScriptedChat, ToneTts
    from conftest import live_app, scripted_settings

    settings = scripted_settings(tmp_path_factory.mktemp("partials"), stt={"engine": "moonshine"})
    engines = {"llm": ScriptedChat("Paris."), "tts.fast": ToneTts()}
    with live_app(settings, models=model_store, engines=engines) as server:
        async with connect(server) as ws:
            client = ChatClient(ws)
            await client.until(lambda e: e["type"] == "session_started")
            await client.stream(question_pcm, realtime=1.0)
            final = await client.until(lambda e: e["type"] == "transcript" and e["final"])
    partials = [e for e in client.of("transcript") if not e["final"]]
    assert partials and client.events.index(partials[0]) < client.events.index(final)
    assert "capital" in final["text"].lower()
