"""Speech-to-text engines on real human speech: faster-whisper, moonshine, and the remote engine
against a real local OpenAI-compatible server that runs faster-whisper."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from fastapi import FastAPI, Form, Header, UploadFile
from fastapi.responses import JSONResponse
from moonshine_voice import get_assets_path

from avatar.audio.pcm import PcmAudio
from avatar.engines.registry import create_engine
from avatar.engines.stt.moonshine import MoonshineStt
from avatar.engines.stt.openai_remote import OpenAISpeechToText, language_code
from avatar.engines.stt.whisper import FasterWhisperStt, decode
from avatar.errors import AudioError, EmptyAudio, EngineFailed, EngineTimeout, EngineUnavailable
from avatar.models.store import ModelStore
from avatar.settings import SttSettings
from avatar.testing.serving import serve_in_thread

BECKETT = ("tried", "failed", "matter", "again")
TWO_CITIES = ("best of times", "worst of times", "wisdom", "foolishness")


def load(name: str, seconds: float | None = None) -> PcmAudio:
    samples, rate = sf.read(get_assets_path() / name, dtype="float32")
    if seconds is not None:
        samples = samples[: int(seconds * rate)]
    return PcmAudio(samples, rate)


def assert_words(text: str, words: tuple[str, ...]) -> None:
    lowered = text.lower()
    missing = [w for w in words if w not in lowered]
    assert not missing, f"{missing} not in {text!r}"


@pytest.fixture(scope="module")
def beckett() -> PcmAudio:
    return load("beckett.wav")  # 10 s at 16 kHz


@pytest.fixture(scope="module")
def two_cities() -> PcmAudio:
    return load("two_cities.wav", 12.0)  # 48 kHz: exercises resampling


@pytest.fixture(scope="module")
def whisper(model_store: ModelStore) -> Iterator[FasterWhisperStt]:
    engine = create_engine("stt", "faster-whisper", SttSettings(), model_store)
    assert isinstance(engine, FasterWhisperStt)
    engine.load()
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def moonshine(model_store: ModelStore) -> Iterator[MoonshineStt]:
    engine = create_engine("stt", "moonshine", SttSettings(engine="moonshine"), model_store)
    assert isinstance(engine, MoonshineStt)
    engine.load()
    yield engine
    engine.shutdown()


# --- faster-whisper -------------------------------------------------------------------------


async def test_whisper_transcribes_and_detects_english(
    whisper: FasterWhisperStt, beckett: PcmAudio, two_cities: PcmAudio
) -> None:
    first = await whisper.transcribe(beckett)
    second = await whisper.transcribe(two_cities)

    assert_words(first.text, BECKETT)
    assert_words(second.text, TWO_CITIES)
    assert first.language == second.language == "en"
    assert first.duration_s == pytest.approx(beckett.duration_s, abs=0.01)
    assert second.duration_s == pytest.approx(two_cities.duration_s, abs=0.01)
    assert first.no_speech_probability < 0.5


async def test_whisper_with_language_given(whisper: FasterWhisperStt, beckett: PcmAudio) -> None:
    result = await whisper.transcribe(beckett, language="en-US")

    assert result.language == "en"
    assert_words(result.text, BECKETT)


async def test_whisper_single_encode_detection_matches_faster_whisper(
    whisper: FasterWhisperStt, beckett: PcmAudio
) -> None:
    # Our padded auto-detect path reuses the encoder output; it must agree with the library's own
    # path (the trimmed path, the default, is compared in test_stt_trim.py and `bench stt`).
    ours = decode(whisper._model, beckett.samples, None, 1, trim=False)
    segments, info = whisper._model.transcribe(
        beckett.samples, beam_size=1, without_timestamps=True, condition_on_previous_text=False
    )
    theirs = " ".join(s.text.strip() for s in segments)

    assert ours.language == info.language
    assert ours.text == theirs


async def test_whisper_detect_language(whisper: FasterWhisperStt, beckett: PcmAudio) -> None:
    language, probability = await whisper.detect_language(beckett)

    assert language == "en"
    assert 0.5 < probability <= 1.0


async def test_whisper_empty_and_short_audio_give_empty_text(whisper: FasterWhisperStt) -> None:
    for audio in (PcmAudio.silence(0.0, 16_000), PcmAudio.silence(0.05, 16_000)):
        result = await whisper.transcribe(audio)
        assert result.text == ""
        assert result.language is None
        assert result.no_speech_probability == 1.0
    with pytest.raises(EmptyAudio):
        await whisper.detect_language(PcmAudio.silence(0.02, 16_000))


async def test_whisper_silence_has_no_text_and_no_language(whisper: FasterWhisperStt) -> None:
    result = await whisper.transcribe(PcmAudio.silence(2.0, 16_000))

    assert result.text == ""
    assert result.language is None
    assert result.no_speech_probability > 0.5


async def test_whisper_rejects_unknown_language(
    whisper: FasterWhisperStt, beckett: PcmAudio
) -> None:
    with pytest.raises(EngineUnavailable, match="'xx'"):
        await whisper.transcribe(beckett, language="xx")


def test_whisper_capabilities() -> None:
    caps = FasterWhisperStt.capabilities
    assert not caps.streaming and caps.languages is None and caps.detects_language


# --- moonshine ------------------------------------------------------------------------------


async def test_moonshine_transcribes(moonshine: MoonshineStt, beckett: PcmAudio) -> None:
    result = await moonshine.transcribe(beckett, language="en")

    assert_words(result.text, BECKETT)
    assert result.language == "en"
    assert result.duration_s == pytest.approx(beckett.duration_s, abs=0.01)


async def feed_all(stream: Any, audio: PcmAudio, chunk_s: float = 0.15) -> list[str]:
    step = int(chunk_s * audio.sample_rate)
    partials = []
    for start in range(0, len(audio.samples), step):
        chunk = PcmAudio(audio.samples[start : start + step], audio.sample_rate)
        partial = await stream.feed(chunk)
        if partial is not None:
            partials.append(partial)
    return partials


async def test_moonshine_streams_partials(moonshine: MoonshineStt, beckett: PcmAudio) -> None:
    stream = moonshine.open_stream()
    partials = await feed_all(stream, beckett)
    final = await stream.finish()

    assert len(set(partials)) >= 2
    assert all(a != b for a, b in zip(partials, partials[1:], strict=False))
    assert_words(partials[-1], ("tried",))
    assert_words(final.text, BECKETT)
    assert final.duration_s == pytest.approx(beckett.duration_s, abs=0.01)


async def test_moonshine_streams_are_independent(
    moonshine: MoonshineStt, beckett: PcmAudio, two_cities: PcmAudio
) -> None:
    a, b = moonshine.open_stream(), moonshine.open_stream()
    await asyncio.gather(feed_all(a, beckett), feed_all(b, two_cities, chunk_s=0.2))
    final_a, final_b = await asyncio.gather(a.finish(), b.finish())

    assert_words(final_a.text, BECKETT)
    assert_words(final_b.text, ("best of times", "worst of times"))
    assert "times" not in final_a.text.lower() and "tried" not in final_b.text.lower()


async def test_moonshine_stream_lifecycle(moonshine: MoonshineStt, beckett: PcmAudio) -> None:
    empty = moonshine.open_stream()
    assert (await empty.finish()).text == ""
    with pytest.raises(EngineFailed, match="finished"):
        await empty.feed(beckett)

    mixed = moonshine.open_stream()
    await mixed.feed(PcmAudio(beckett.samples[:8_000], 16_000))
    with pytest.raises(AudioError, match="sample rate changed"):
        await mixed.feed(PcmAudio(np.zeros(4_800, np.float32), 48_000))
    await mixed.aclose()

    abandoned = moonshine.open_stream()
    await abandoned.feed(PcmAudio(beckett.samples[:16_000], 16_000))
    await abandoned.aclose()
    with pytest.raises(EngineFailed):
        await abandoned.finish()


async def test_moonshine_is_english_only(moonshine: MoonshineStt, beckett: PcmAudio) -> None:
    with pytest.raises(EngineUnavailable, match="English-only.*faster-whisper"):
        moonshine.open_stream(language="zh")
    with pytest.raises(EngineUnavailable, match="English-only"):
        await moonshine.transcribe(beckett, language="zh-CN")
    assert MoonshineStt.capabilities.streaming
    assert MoonshineStt.capabilities.languages == frozenset({"en"})


# --- remote (OpenAI-compatible) -------------------------------------------------------------

API_KEY = "test-key-0123456789"


def transcription_app(engine: FasterWhisperStt, seen: list[dict[str, Any]]) -> FastAPI:
    """A minimal OpenAI-compatible server; the first path part picks its behaviour."""
    app = FastAPI()
    names = {"en": "english"}

    @app.post("/{mode}/v1/audio/transcriptions")
    async def transcriptions(
        mode: str,
        file: UploadFile,
        model: str = Form(...),
        response_format: str = Form("json"),
        language: str | None = Form(None),
        authorization: str | None = Header(None),
    ) -> Any:
        seen.append({"mode": mode, "model": model, "format": response_format, "language": language})
        if mode == "fail":
            return JSONResponse({"error": {"message": "GPU fell over"}}, status_code=500)
        if mode == "auth" and authorization != f"Bearer {API_KEY}":
            return JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
        if mode == "plain" and response_format == "verbose_json":
            return JSONResponse({"detail": "verbose_json is not supported"}, status_code=400)
        if mode == "slow":
            await asyncio.sleep(2.0)
        samples, rate = sf.read(io.BytesIO(await file.read()), dtype="float32")
        result = await engine.transcribe(PcmAudio(samples, rate), language=language)
        if response_format != "verbose_json":
            return {"text": result.text}
        lang = names.get(result.language or "", result.language)
        segments = [{"id": 0, "text": result.text, "no_speech_prob": result.no_speech_probability}]
        return {
            "text": result.text,
            "language": lang,
            "duration": result.duration_s,
            "segments": segments,
        }

    return app


@pytest.fixture(scope="module")
def server(whisper: FasterWhisperStt) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    app = transcription_app(whisper, seen)
    with serve_in_thread(app, timeout_graceful_shutdown=1) as served:
        yield served.url, seen


def remote(base: str, mode: str, **kwargs: Any) -> OpenAISpeechToText:
    return OpenAISpeechToText(base_url=f"{base}/{mode}/v1", model="whisper-base", **kwargs)


async def test_remote_gets_the_words_and_language(
    server: tuple[str, list[dict[str, Any]]], beckett: PcmAudio
) -> None:
    base, seen = server
    engine = remote(base, "ok")
    assert engine.loaded
    result = await engine.transcribe(beckett)
    given = await engine.transcribe(beckett, language="en-GB")
    await engine.aclose()

    assert_words(result.text, BECKETT)
    assert result.language == "en"  # the server said "english"
    assert result.no_speech_probability < 0.5
    assert result.duration_s == pytest.approx(beckett.duration_s)
    assert given.language == "en"
    assert seen[-2] == {
        "mode": "ok",
        "model": "whisper-base",
        "format": "verbose_json",
        "language": None,
    }
    assert seen[-1]["language"] == "en"


async def test_remote_falls_back_to_json_once(
    server: tuple[str, list[dict[str, Any]]], beckett: PcmAudio
) -> None:
    base, seen = server
    engine = remote(base, "plain")
    first = await engine.transcribe(beckett)
    before = len(seen)
    second = await engine.transcribe(beckett)

    assert_words(first.text, BECKETT)
    assert first.language is None and second.text == first.text
    assert [s["format"] for s in seen[before:]] == ["json"]  # remembered: no second rejection


async def test_remote_server_error_is_retryable(
    server: tuple[str, list[dict[str, Any]]], beckett: PcmAudio
) -> None:
    with pytest.raises(EngineFailed, match="HTTP 500.*GPU fell over") as info:
        await remote(server[0], "fail").transcribe(beckett)
    assert info.value.retryable


async def test_remote_auth_error_is_not_retryable(
    server: tuple[str, list[dict[str, Any]]], beckett: PcmAudio
) -> None:
    with pytest.raises(EngineFailed, match="HTTP 401.*invalid api key") as info:
        await remote(server[0], "auth").transcribe(beckett)
    assert not info.value.retryable
    assert info.value.code == "engine_auth"
    assert "AVATAR_STT__API_KEY" in (info.value.hint or "")

    result = await remote(server[0], "auth", api_key=API_KEY).transcribe(beckett)
    assert_words(result.text, BECKETT)


async def test_remote_timeout(server: tuple[str, list[dict[str, Any]]], beckett: PcmAudio) -> None:
    with pytest.raises(EngineTimeout):
        await remote(server[0], "slow", read_timeout_s=0.3).transcribe(beckett)


async def test_remote_closed_port_is_unavailable(beckett: PcmAudio) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now

    with pytest.raises(EngineUnavailable, match="cannot reach"):
        await OpenAISpeechToText(base_url=f"http://127.0.0.1:{port}", model="m").transcribe(beckett)


def test_remote_needs_a_url(model_store: ModelStore) -> None:
    with pytest.raises(EngineUnavailable, match="AVATAR_STT__BASE_URL"):
        create_engine("stt", "openai", SttSettings(engine="openai"), model_store)
    engine = create_engine(
        "stt", "openai", SttSettings(engine="openai", base_url="http://h:1"), model_store
    )
    assert engine.base_url == "http://h:1/v1"


def test_language_names_and_tags_become_codes() -> None:
    assert language_code("English") == "en"
    assert language_code("chinese") == "zh"
    assert language_code("haitian creole") == "ht"
    assert language_code("pt_BR") == "pt"
    assert language_code("yue") == "yue"
