"""The OpenAI-compatible /v1 routes through the official ``openai`` SDK, on the real server and
models; engine faults are injected with a scripted chat model on a second server."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from avatar.audio.decode import decode_audio
from avatar.audio.encode import encode_wav
from avatar.engines.hub import EngineHub
from avatar.engines.tts.piper import PiperTts
from avatar.services import speech
from avatar.storage import AudioStore, Database, NewVoiceProfile, VoiceProfiles
from avatar.testing.fakes import ScriptedChat
from conftest import TEST_TOKEN, LiveServer, live_app, rate_limits, say_en, scripted_settings

SENTENCE = "The quick brown fox jumps over the lazy dog."
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def sentence_wav(speaker: PiperTts) -> bytes:
    return encode_wav(say_en(speaker, SENTENCE))


@pytest.fixture
async def client(live_server: LiveServer, api: httpx.AsyncClient) -> AsyncIterator[AsyncOpenAI]:
    """The SDK against the live server; ``api`` gives this test fresh rate-limit counters."""
    async with AsyncOpenAI(
        base_url=live_server.url + "/v1", api_key=TEST_TOKEN, max_retries=0, timeout=120
    ) as sdk:
        yield sdk


def words(text: str) -> set[str]:
    return {w.strip(".,!?").lower() for w in text.split()}


# --- transcription --------------------------------------------------------------------------


async def test_transcription_returns_the_spoken_words(client, sentence_wav) -> None:
    result = await client.audio.transcriptions.create(
        file=("speech.wav", sentence_wav, "audio/wav"), model="whisper-1"
    )
    # Piper's voice varies from run to run and Whisper base misses a word now and then (seen
    # once in CI): four of the five key words must come back.
    assert len({"quick", "brown", "fox", "lazy", "dog"} & words(result.text)) >= 4, result.text
    text = await client.audio.transcriptions.create(
        file=("speech.wav", sentence_wav), model="whisper-1", response_format="text"
    )
    assert isinstance(text, str) and "fox" in text.lower()
    verbose = await client.audio.transcriptions.create(
        file=("speech.wav", sentence_wav), model="whisper-1", response_format="verbose_json"
    )
    assert verbose.language == "en" and 1.0 < verbose.duration < 10.0
    assert "dog" in verbose.text.lower()


async def test_oversize_upload_is_refused_with_413(client, api) -> None:
    big = b"RIFF" + b"\0" * (25 * 1024 * 1024 + 100_000)
    with pytest.raises(openai.APIStatusError) as info:
        await client.audio.transcriptions.create(file=("big.wav", big), model="whisper-1")
    assert info.value.status_code == 413
    assert info.value.body["code"] == "payload_too_large"  # type: ignore[index]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(27):
            yield b"\0" * (1024 * 1024)

    response = await api.post(
        "/v1/audio/transcriptions",
        content=chunked(),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


async def test_unsupported_upload_is_refused_with_415(client) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        await client.audio.transcriptions.create(
            file=("notes.wav", b"these are not audio bytes at all" * 10), model="whisper-1"
        )
    assert info.value.status_code == 415
    assert info.value.body["code"] == "audio_unsupported_format"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad_format:
        await client.audio.transcriptions.create(
            file=("a.wav", b"RIFF"),
            model="whisper-1",
            response_format="ogg",  # type: ignore[arg-type]
        )
    assert bad_format.value.body["param"] == "response_format"  # type: ignore[index]


def m4a(wav: bytes, container: str = "ipod") -> bytes:
    """``wav`` as AAC in an M4A (``ipod``) or MP4 file, encoded with PyAV."""
    import io

    import av

    audio = decode_audio(wav, target_rate=None)
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream("aac", rate=audio.sample_rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(audio.samples[None, :], format="flt", layout="mono")
        frame.sample_rate = audio.sample_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


async def test_m4a_and_aac_are_transcribed(client, sentence_wav) -> None:
    for name, data in [("note.m4a", m4a(sentence_wav)), ("clip.mp4", m4a(sentence_wav, "mp4"))]:
        result = await client.audio.transcriptions.create(file=(name, data), model="whisper-1")
        assert len(words(result.text) & words(SENTENCE)) >= 7, (name, result.text)
    # the server's own "aac" speech output can be sent back (ADTS)
    speech = await client.audio.speech.create(
        model="tts-1", voice="alloy", input=SENTENCE, response_format="aac"
    )
    again = await client.audio.transcriptions.create(
        file=("reply.aac", speech.content), model="whisper-1"
    )
    # The server's Piper draws fresh noise on every call, and greedy Whisper reads about one
    # realisation in twenty a word or two off ("The quit-bram fox", "jumped"): 20 tries here gave
    # 8, 7 or 6 of the 8 words. A broken ADTS stream gives none.
    assert len(words(again.text) & words(SENTENCE)) >= 5, again.text


async def test_verbose_json_has_timed_segments_and_words(client, sentence_wav) -> None:
    verbose = await client.audio.transcriptions.create(
        file=("s.wav", sentence_wav),
        model="whisper-1",
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.segments and verbose.duration > 2
    first, last = verbose.segments[0], verbose.segments[-1]
    assert 0 <= first.start < first.end <= last.end <= verbose.duration + 0.5
    assert first.avg_logprob is not None and first.text
    assert verbose.words and len(verbose.words) >= 7
    starts = [w.start for w in verbose.words]
    assert starts == sorted(starts) and verbose.words[0].word.strip(".,").lower() == "the"
    plain = await client.audio.transcriptions.create(
        file=("s.wav", sentence_wav), model="whisper-1", response_format="verbose_json"
    )
    assert plain.segments and getattr(plain, "words", None) is None


async def test_srt_and_vtt_subtitles(client, sentence_wav) -> None:
    srt = await client.audio.transcriptions.create(
        file=("s.wav", sentence_wav), model="whisper-1", response_format="srt"
    )
    lines = str(srt).strip().splitlines()
    assert lines[0] == "1" and re.fullmatch(
        r"\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}", lines[1]
    )
    assert "fox" in str(srt).lower()
    vtt = await client.audio.transcriptions.create(
        file=("s.wav", sentence_wav), model="whisper-1", response_format="vtt"
    )
    assert str(vtt).startswith("WEBVTT\n\n00:00:0") and " --> " in str(vtt)


async def test_word_times_need_verbose_json(client, sentence_wav) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.audio.transcriptions.create(
            file=("s.wav", sentence_wav), model="whisper-1", timestamp_granularities=["word"]
        )
    assert info.value.body["param"] == "timestamp_granularities"  # type: ignore[index]


# --- speech ---------------------------------------------------------------------------------


async def test_speech_returns_wav_that_transcribes_back(client) -> None:
    raw = await client.audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input=SENTENCE, response_format="wav"
    )
    assert raw.headers["content-type"] == "audio/wav"
    assert raw.headers["x-avatar-voice"].startswith("piper:")
    assert raw.headers["x-avatar-voice-cloned"] == "false"
    data = raw.content
    audio = decode_audio(data, target_rate=None)
    assert audio.sample_rate == 22_050 and 1.0 < audio.duration_s < 10.0
    back = await client.audio.transcriptions.create(file=("r.wav", data), model="whisper-1")
    assert {"fox", "dog"} <= words(back.text)


@pytest.mark.parametrize(
    ("fmt", "media"),
    [
        ("mp3", "audio/mpeg"),
        ("opus", "audio/ogg"),
        ("flac", "audio/flac"),
        ("aac", "audio/aac"),
    ],
)
async def test_speech_formats_decode(client, fmt, media) -> None:
    raw = await client.audio.speech.with_raw_response.create(
        model="tts-1", voice="nova", input="Hello there.", response_format=fmt
    )
    assert raw.headers["content-type"] == media
    if fmt != "aac":  # AAC (ADTS) is not an upload format; check its frame sync instead
        assert 0.3 < decode_audio(raw.content, target_rate=None).duration_s < 5.0
    else:
        assert raw.content[:2] == b"\xff\xf1"


async def test_speech_default_is_mp3_and_pcm_is_24k(client) -> None:
    mp3 = await client.audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input="Good morning."
    )
    assert mp3.headers["content-type"] == "audio/mpeg"
    pcm = await client.audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input="Good morning.", response_format="pcm"
    )
    assert pcm.headers["x-avatar-sample-rate"] == "24000"
    duration = len(pcm.content) / 2 / 24_000
    assert len(pcm.content) % 2 == 0 and 0.3 < duration < 5.0


async def test_speed_changes_the_duration(client) -> None:
    async def seconds(speed: float) -> float:
        raw = await client.audio.speech.with_raw_response.create(
            model="tts-1", voice="alloy", input=SENTENCE, response_format="pcm", speed=speed
        )
        return len(raw.content) / 2 / 24_000

    normal, fast = await seconds(1.0), await seconds(2.0)
    assert fast == pytest.approx(normal / 2, rel=0.1)


@pytest.fixture
async def profile(live_server: LiveServer, hub: EngineHub) -> AsyncIterator[tuple[str, str]]:
    """A voice profile stored through the real storage layer of the live server's data dir."""
    settings = live_server.settings
    store = AudioStore(Path(settings.data_dir) / "audio")
    audio = await speech.say(hub, "This is my reference voice.", language="en")
    rel = await asyncio.to_thread(store.save, "profiles", encode_wav(audio), ".wav")
    db = Database(settings.resolved_database_url)
    await db.migrate()
    async with db.write() as session:
        row = await VoiceProfiles(session).create(
            NewVoiceProfile(
                name="Grandpa Joe (openai test)",
                audio=rel,
                sample_rate=audio.sample_rate,
                duration_s=audio.duration_s,
            )
        )
        profile_id = row.id
    try:
        yield profile_id, row.name
    finally:
        async with db.write() as session:
            await VoiceProfiles(session).delete(profile_id)
        store.delete(rel)
        await db.dispose()


async def test_voice_profile_is_named_and_spoken_with_the_packaged_voice(client, profile) -> None:
    profile_id, name = profile
    for voice in (name, profile_id):
        raw = await client.audio.speech.with_raw_response.create(
            model="tts-1", voice=voice, input="Hello.", response_format="wav"
        )
        assert raw.headers["x-avatar-voice-profile"] == profile_id
        assert raw.headers["x-avatar-voice-cloned"] == "false"
        assert raw.headers["x-avatar-voice"].startswith("piper:")
    plain = await client.audio.speech.with_raw_response.create(
        model="tts-1", voice="shimmer", input="Hello.", response_format="wav"
    )
    assert "x-avatar-voice-profile" not in plain.headers


async def test_speech_input_is_validated(client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.audio.speech.create(model="tts-1", voice="alloy", input="x" * 4097)
    assert info.value.body["param"] == "input"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        await client.audio.speech.create(
            model="tts-1",
            voice="alloy",
            input="hi",
            response_format="ogg",
        )
    with pytest.raises(openai.BadRequestError) as empty:
        await client.audio.speech.create(model="tts-1", voice="alloy", input="   ")
    assert empty.value.body["param"] == "input"  # type: ignore[index]


# --- chat -----------------------------------------------------------------------------------


async def test_chat_completion(client, live_server) -> None:
    reply = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": QUESTION}]
    )
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.model == live_server.settings.llm.model
    choice = reply.choices[0]
    assert "paris" in (choice.message.content or "").lower()
    assert choice.finish_reason in ("stop", "length") and choice.message.role == "assistant"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 5 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


async def test_chat_streaming(client) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
        ],
        stream=True,
        stream_options={"include_usage": True},
        temperature=0.0,
    )
    chunks = [chunk async for chunk in stream]
    content = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(content) >= 3 and "paris" in "".join(content).lower()
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1


async def test_chat_max_tokens_cuts_with_length(client) -> None:
    reply = await client.chat.completions.create(
        model="x",
        messages=[{"role": "user", "content": "Count from one to fifty in words."}],
        max_tokens=5,
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens <= 6


async def test_chat_stream_wire_format(api) -> None:
    body = {
        "model": "m",
        "stream": True,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "Say hi."}],
    }
    async with api.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.aiter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[0][6:])["object"] == "chat.completion.chunk"


async def test_chat_input_is_validated(client) -> None:
    cases: list[dict[str, Any]] = [
        {"messages": []},
        {"messages": [{"role": "tool", "content": "x"}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        {"messages": [{"role": "user", "content": "x"}], "n": 2},
        {"messages": [{"role": "user", "content": "x"}], "temperature": 3},
    ]
    for case in cases:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="m", **case)
        assert info.value.body["type"] == "invalid_request_error"  # type: ignore[index]


async def test_validation_errors_are_400_with_the_parameter_named(client, api) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], temperature=3
        )
    body = info.value.body
    assert body["param"] == "temperature" and "temperature" in body["message"]  # type: ignore[index]
    missing = await api.post("/v1/chat/completions", json={"model": "m"})
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == "missing required parameter 'messages'"
    broken = await api.post(
        "/v1/chat/completions", content=b'{"model": ', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert broken.json()["error"]["message"] == "the request body is not valid JSON"
    assert set(broken.json()) == {"error"}  # OpenAI's error object alone


async def test_unknown_v1_paths_are_openai_404s(api) -> None:
    for method, path in [("GET", "/v1/nothing"), ("POST", "/v1/audio/translations")]:
        response = await api.request(method, path)
        assert response.status_code == 404, path
        assert set(response.json()) == {"error"}
        error = response.json()["error"]
        assert error["type"] == "not_found_error" and path in error["message"]
    wrong_method = await api.get("/v1/chat/completions")
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["allow"]
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


async def test_json_mode_returns_one_json_object(client) -> None:
    reply = await client.chat.completions.create(
        model="m",
        messages=[
            {"role": "system", "content": "Answer in JSON."},
            {"role": "user", "content": 'The capital of France, as {"capital": ...}.'},
        ],
        response_format={"type": "json_object"},
        max_tokens=60,
        temperature=0.0,
    )
    assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)


@pytest.mark.parametrize(
    ("option", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"logprobs": True}, "logprobs"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format",
        ),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ],
)
async def test_options_that_cannot_be_honoured_are_refused(client, option, param) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], **option
        )
    body = info.value.body
    assert body["param"] == param and body["code"] == "unsupported_parameter"  # type: ignore[index]
    assert param in body["message"]  # type: ignore[index]


# --- models, auth, limits -------------------------------------------------------------------


async def test_models_list(client, live_server) -> None:
    ids = [m.id async for m in client.models.list()]
    s = live_server.settings
    assert {s.stt.model, s.llm.model, s.tts.fast.model} <= set(ids)


async def test_models_retrieve_every_listed_id_and_the_old_alias(client, live_server) -> None:
    async for model in client.models.list():
        assert (await client.models.retrieve(model.id)).id == model.id
    assert live_server.settings.llm.model == "qwen2.5-coder-0.5b-instruct"
    old = await client.models.retrieve("qwen2.5-0.5b-instruct")  # the id before the rename
    assert old.id == "qwen2.5-coder-0.5b-instruct"
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("gpt-9")
    assert info.value.body["param"] == "model"  # type: ignore[index]


async def test_wrong_key_raises_authentication_error(live_server, sentence_wav) -> None:
    async with AsyncOpenAI(
        base_url=live_server.url + "/v1", api_key="wrong-key-0123456789", max_retries=0
    ) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            await bad.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
        assert info.value.body["code"] == "unauthorized"  # type: ignore[index]
        with pytest.raises(openai.AuthenticationError):
            await bad.models.list()
        with pytest.raises(openai.AuthenticationError):
            await bad.audio.transcriptions.create(file=("a.wav", sentence_wav), model="w")
        with pytest.raises(openai.AuthenticationError):
            await bad.audio.speech.create(model="tts-1", voice="alloy", input="hi")
    async with httpx.AsyncClient(base_url=live_server.url) as anonymous:
        response = await anonymous.post("/v1/audio/speech", json={})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["type"] == "authentication_error"


async def test_rate_limit_raises_rate_limit_error(client, live_server) -> None:
    with rate_limits(live_server, models="5/minute"):
        for _ in range(5):
            await client.models.list()
        with pytest.raises(openai.RateLimitError) as info:
            await client.models.list()
    assert int(info.value.response.headers["retry-after"]) >= 1
    assert info.value.body["type"] == "rate_limit_error"  # type: ignore[index]


# --- engine faults --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, EngineHub]]:
    """A second server whose chat model is scripted to fail."""
    with live_app(scripted_settings(tmp_path_factory.mktemp("faulty"))) as server:
        yield f"{server.url}/v1", server.hub


async def test_engine_failure_before_the_reply_is_an_error_status(faulty) -> None:
    base_url, engines = faulty
    engines.override("llm", ScriptedChat("never said", fail_after=0))
    async with AsyncOpenAI(base_url=base_url, api_key=TEST_TOKEN, max_retries=0) as sdk:
        for stream in (False, True):
            with pytest.raises(openai.InternalServerError) as info:
                await sdk.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}], stream=stream
                )
            assert info.value.status_code == 502
            assert info.value.body["code"] == "engine_stream_broken"  # type: ignore[index]
            assert info.value.body["type"] == "server_error"  # type: ignore[index]


async def test_engine_failure_mid_stream_ends_with_an_error_event(faulty) -> None:
    base_url, engines = faulty
    engines.override("llm", ScriptedChat("one two three four", fail_after=2, interval_s=0.0))
    async with AsyncOpenAI(base_url=base_url, api_key=TEST_TOKEN, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        got: list[str] = []
        with pytest.raises(openai.APIError, match="scripted failure"):
            async for chunk in stream:
                got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "one two"
