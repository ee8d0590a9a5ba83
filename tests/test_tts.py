"""TTS engines with the real packaged voices: Piper (English), espeak-ng (others), the embedded
router, the OpenAI-compatible remote engine against a real local server, and mode selection."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
import soundfile
import soxr
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import VoiceRef
from avatar.engines.tts.embedded import EmbeddedTts
from avatar.engines.tts.espeak import EspeakTts
from avatar.engines.tts.language import (
    EmptyText,
    UnsupportedLanguage,
    detect_text_language,
    speech_language,
)
from avatar.engines.tts.modes import TtsModes
from avatar.engines.tts.openai_remote import OpenAITextToSpeech
from avatar.engines.tts.piper import PiperTts
from avatar.errors import EngineFailed, EngineTimeout, EngineUnavailable
from avatar.models.store import ModelStore
from avatar.settings import TtsSettings, TtsSlotSettings
from avatar.testing.processes import closed_port
from avatar.testing.serving import serve_in_thread
from conftest import say_en

pytestmark = pytest.mark.slow
FOX = "The quick brown fox jumps over the lazy dog."
EMBEDDED = TtsSlotSettings(engine="embedded", model="piper-joe")


@pytest.fixture(scope="module")
def piper(model_store: ModelStore) -> Iterator[PiperTts]:
    engine = PiperTts.from_settings(TtsSlotSettings(engine="piper"), model_store)
    engine.load()
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def espeak() -> Iterator[EspeakTts]:
    engine = EspeakTts()
    engine.load()
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def embedded(piper: PiperTts, espeak: EspeakTts) -> EmbeddedTts:
    return EmbeddedTts(piper, espeak)


@pytest.fixture(scope="module")
def whisper(model_store: ModelStore) -> object:
    faster_whisper = pytest.importorskip("faster_whisper")
    path = str(model_store.path("whisper-base"))
    return faster_whisper.WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=2)


async def chunks(stream: AsyncIterator[PcmAudio]) -> list[PcmAudio]:
    return [c async for c in stream]


def joined(parts: list[PcmAudio]) -> PcmAudio:
    return PcmAudio(np.concatenate([p.samples for p in parts]), parts[0].sample_rate)


async def transcribe(whisper: object, audio: PcmAudio, language: str) -> str:
    """Whisper off the event loop (a blocked loop would stall the engines' stream hand-off)."""
    samples = soxr.resample(audio.samples, audio.sample_rate, 16_000).astype(np.float32)

    def run() -> str:
        segments, _ = whisper.transcribe(samples, language=language, beam_size=1)  # type: ignore[attr-defined]
        return "".join(s.text for s in segments)

    return await asyncio.to_thread(run)


def rms(audio: PcmAudio) -> float:
    return float(np.sqrt(np.mean(np.square(audio.samples)))) if len(audio.samples) else 0.0


# --- Piper ----------------------------------------------------------------------------------


async def test_piper_speaks_a_sentence_at_22khz(piper: PiperTts) -> None:
    audio = joined(await chunks(piper.synthesize_stream(FOX)))
    assert piper.capabilities.sample_rate == audio.sample_rate == 22_050
    assert 1.0 < audio.duration_s < 6.0  # nine words
    assert rms(audio) > 0.01


async def test_piper_streams_one_chunk_per_sentence(piper: PiperTts) -> None:
    text = "Hello there. How are you today? I am a voice assistant."
    parts = await chunks(piper.synthesize_stream(text))
    assert len(parts) == 3
    assert all(p.duration_s > 0.3 and p.sample_rate == 22_050 for p in parts)


async def test_closing_the_stream_early_stops_synthesis(piper: PiperTts) -> None:
    text = " ".join(f"This is sentence number {n} of a long answer." for n in range(1, 11))
    before = piper.sentences_synthesized
    stream = piper.synthesize_stream(text)
    first = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    await piper.run(lambda: None)  # the worker thread is free again: it stopped
    assert first.duration_s > 0.5
    assert piper.sentences_synthesized - before < 10


def test_deterministic_piper_says_the_same_text_with_the_same_samples(speaker: PiperTts) -> None:
    first = say_en(speaker, "What is the capital of France?")
    second = say_en(speaker, "What is the capital of France?")
    assert first.duration_s > 1.0
    assert np.array_equal(first.samples, second.samples)


async def test_piper_rejects_other_languages(piper: PiperTts) -> None:
    with pytest.raises(UnsupportedLanguage):
        piper.synthesize_stream("Hola", language="es")


async def test_piper_round_trip_through_whisper(piper: PiperTts, whisper: object) -> None:
    """Piper's voice (with its random noise, as users hear it) is understood. Whisper misheard
    one word in 2 of 20 runs ("quip", "jumped"): one near miss of six is allowed, two are not."""
    audio = joined(await chunks(piper.synthesize_stream(FOX)))
    words = set(re.findall(r"[a-z]+", (await transcribe(whisper, audio, "en")).lower()))
    assert len({"quick", "brown", "fox", "jumps", "lazy", "dog"} - words) <= 1


# --- espeak-ng ------------------------------------------------------------------------------


async def test_espeak_speaks_mandarin(espeak: EspeakTts) -> None:
    parts = await chunks(espeak.synthesize_stream("你好，今天天气很好", language="zh"))
    audio = joined(parts)
    assert audio.sample_rate == espeak.capabilities.sample_rate == 22_050
    assert audio.duration_s > 1.0
    assert rms(audio) > 0.01
    assert espeak.describe_voice("zh", None) == "espeak-ng:cmn"


@pytest.mark.parametrize("lang", ["en", "zh", "es", "fr", "de", "ja", "ko", "it", "pt", "ru"])
def test_espeak_has_a_voice_for_the_main_languages(espeak: EspeakTts, lang: str) -> None:
    assert lang in (espeak.capabilities.languages or ())
    assert espeak.voice_for(lang)


def test_espeak_accepts_regional_tags(espeak: EspeakTts) -> None:
    assert espeak.voice_for("zh-CN") == "cmn"
    assert espeak.voice_for("pt_BR") == "pt-BR"
    assert espeak.voice_for("de-AT") == "de"


def test_espeak_unknown_language_is_a_clear_error(espeak: EspeakTts) -> None:
    with pytest.raises(UnsupportedLanguage) as info:
        espeak.synthesize_stream("hello", language="tlh")
    assert "tlh" in info.value.message and info.value.hint


async def test_espeak_one_chunk_per_sentence(espeak: EspeakTts) -> None:
    parts = await chunks(espeak.synthesize_stream("你好。今天天气很好！我们走吧。", language="zh"))
    assert len(parts) == 3


# --- embedded router ------------------------------------------------------------------------


async def test_embedded_routes_english_to_piper_and_chinese_to_espeak(
    embedded: EmbeddedTts,
) -> None:
    assert embedded.describe_voice("en", None) == "piper:joe"
    assert embedded.describe_voice("zh", None) == "espeak-ng:cmn"
    en = joined(await chunks(embedded.synthesize_stream("Good morning.", language="en")))
    zh = joined(await chunks(embedded.synthesize_stream("早上好。", language="zh")))
    assert en.sample_rate == zh.sample_rate == embedded.capabilities.sample_rate == 22_050
    assert rms(en) > 0.01 and rms(zh) > 0.01


async def test_embedded_speaks_cjk_text_with_espeak_even_if_told_english(
    embedded: EmbeddedTts, espeak: EspeakTts, piper: PiperTts
) -> None:
    piper_before = piper.sentences_synthesized
    via_router = joined(await chunks(embedded.synthesize_stream("你好。", language="en")))
    direct = joined(await chunks(espeak.synthesize_stream("你好。", language="zh")))
    assert piper.sentences_synthesized == piper_before
    # espeak-ng adds a little random jitter, so compare lengths, not samples.
    assert abs(via_router.duration_s - direct.duration_s) < 0.05


def test_embedded_never_pretends_to_clone(embedded: EmbeddedTts) -> None:
    profile = VoiceRef(name="alice", reference_audio=PcmAudio.silence(3.0, 16_000))
    description = embedded.describe_voice("en", profile)
    assert description.startswith("piper:joe") and "cannot clone" in description
    assert not embedded.capabilities.cloning


async def test_embedded_unknown_language_is_a_clear_error(embedded: EmbeddedTts) -> None:
    with pytest.raises(UnsupportedLanguage):
        await chunks(embedded.synthesize_stream("qapla", language="tlh"))


@pytest.mark.parametrize("text", ["", "   \n"])
async def test_empty_text_is_a_clear_error(embedded: EmbeddedTts, text: str) -> None:
    with pytest.raises(EmptyText) as info:
        await chunks(embedded.synthesize_stream(text, language="en"))
    assert info.value.hint


@pytest.mark.parametrize(
    ("language", "text", "spoken"),
    [
        ("en", "The word 你好 means hello.", "en"),
        ("en", "你好，今天天气很好", "zh"),
        ("zh", "OK, sure!", "en"),
        ("zh", "我用GPT写代码", "zh"),
        ("auto", "こんにちは", "ja"),
        ("", "Hello", "en"),
        ("fr", "Bonjour", "fr"),
    ],
)
def test_speech_language_follows_a_switched_script(language: str, text: str, spoken: str) -> None:
    assert speech_language(language, text) == spoken


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("你好", "zh"),
        ("こんにちは", "ja"),
        ("日本語です", "ja"),
        ("안녕하세요", "ko"),
        ("Hi", "en"),
    ],
)
def test_detect_text_language(text: str, lang: str) -> None:
    assert detect_text_language(text) == lang


# --- OpenAI-compatible remote, against a real local server speaking with Piper ----------------


def speech_app(piper: PiperTts) -> FastAPI:
    app = FastAPI()

    async def speak(request: Request) -> Response:
        body = await request.json()
        audio = joined(await chunks(piper.synthesize_stream(body["input"])))
        out = io.BytesIO()
        soundfile.write(out, audio.samples, audio.sample_rate, format="WAV", subtype="PCM_16")
        return Response(out.getvalue(), media_type="audio/wav")

    @app.post("/v1/audio/speech")
    async def ok(request: Request) -> Response:
        return await speak(request)

    @app.post("/locked/v1/audio/speech")
    async def locked(request: Request) -> Response:
        if request.headers.get("authorization") != "Bearer sesame":
            return JSONResponse({"error": {"message": "bad key"}}, 401)
        return await speak(request)

    @app.post("/broken/v1/audio/speech")
    async def broken() -> Response:
        return JSONResponse({"error": {"message": "voice model crashed"}}, 500)

    @app.post("/slow/v1/audio/speech")
    async def slow() -> Response:
        await asyncio.sleep(3)
        return Response(b"", media_type="audio/wav")

    return app


@pytest.fixture(scope="module")
def speech_server(piper: PiperTts) -> Iterator[str]:
    app = speech_app(piper)
    with serve_in_thread(app, what="the test speech server", timeout_graceful_shutdown=1) as served:
        yield served.url


def remote(base_url: str, api_key: str | None = None, timeout_s: float = 30) -> OpenAITextToSpeech:
    cfg = TtsSlotSettings(engine="openai", base_url=base_url, model="piper", voice="joe",
                          api_key=api_key, timeout_s=timeout_s)  # fmt: skip
    engine = OpenAITextToSpeech.from_settings(cfg, ModelStore.__new__(ModelStore))
    engine.load()
    return engine


async def test_remote_speech_comes_back(speech_server: str, whisper: object) -> None:
    engine = remote(speech_server)  # a bare server URL means <server>/v1
    parts = await chunks(engine.synthesize_stream(FOX))
    await engine.aclose()
    audio = joined(parts)
    assert audio.sample_rate == engine.capabilities.sample_rate == 24_000  # resampled from 22,050
    assert 1.0 < audio.duration_s < 6.0
    words = set(re.findall(r"[a-z]+", (await transcribe(whisper, audio, "en")).lower()))
    assert {"fox", "dog"} <= words


async def test_remote_api_key_is_sent(speech_server: str) -> None:
    engine = remote(speech_server + "/locked/v1", api_key="sesame")
    audio = joined(await chunks(engine.synthesize_stream("Hello.")))
    assert rms(audio) > 0.01
    await engine.aclose()


async def test_remote_401_is_not_retryable(speech_server: str) -> None:
    engine = remote(speech_server + "/locked/v1", api_key="wrong-key")
    with pytest.raises(EngineFailed) as info:
        await chunks(engine.synthesize_stream("Hello."))
    assert not info.value.retryable and "401" in info.value.message
    assert "API_KEY" in (info.value.hint or "")


async def test_remote_500_is_retryable(speech_server: str) -> None:
    engine = remote(speech_server + "/broken/v1")
    with pytest.raises(EngineFailed) as info:
        await chunks(engine.synthesize_stream("Hello."))
    assert info.value.retryable and "voice model crashed" in info.value.message


async def test_remote_deadline_is_a_timeout(speech_server: str) -> None:
    engine = remote(speech_server + "/slow/v1", timeout_s=0.5)
    with pytest.raises(EngineTimeout):
        await chunks(engine.synthesize_stream("Hello."))


async def test_remote_closed_port_is_unavailable() -> None:
    engine = remote(f"http://127.0.0.1:{closed_port()}/v1")
    with pytest.raises(EngineUnavailable) as info:
        await chunks(engine.synthesize_stream("Hello."))
    assert "cannot reach" in info.value.message


# --- modes ----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_fast_only_config(model_store: ModelStore) -> None:
    modes = TtsModes.from_settings(TtsSettings(), model_store)
    engine, used, reason = modes.select("auto")
    assert isinstance(engine, EmbeddedTts) and used == "fast" and "not configured" in reason
    assert modes.select("fast").engine is engine
    status = modes.status()
    assert status["fast"]["available"] and status["fast"]["engine"] == "embedded"
    assert status["hq"]["configured"] is False and status["hq"]["available"] is False
    assert "AVATAR_TTS__HQ__ENGINE" in status["hq"]["reason"]


def test_hq_requested_but_not_configured(embedded: EmbeddedTts) -> None:
    modes = TtsModes(TtsSettings(), embedded)
    with pytest.raises(EngineUnavailable) as info:
        modes.select("hq")
    assert "not configured" in info.value.message
    assert "AVATAR_TTS__HQ__ENGINE" in (info.value.hint or "")


def test_broken_hq_config_is_reported_not_raised(model_store: ModelStore) -> None:
    settings = TtsSettings(hq=TtsSlotSettings(engine="no-such-engine"))
    modes = TtsModes.from_settings(settings, model_store)
    status = modes.status()["hq"]
    assert status["configured"] and not status["available"] and "no-such-engine" in status["reason"]
    assert modes.select("auto").mode_used == "fast"
    with pytest.raises(EngineUnavailable):
        modes.select("hq")


def test_auto_follows_hq_latency(embedded: EmbeddedTts) -> None:
    clock = FakeClock()
    settings = TtsSettings(
        hq_latency_budget_ms=1000,
        hq=TtsSlotSettings(engine="openai", base_url="http://127.0.0.1:9"),
    )
    hq = OpenAITextToSpeech(base_url="http://127.0.0.1:9")
    modes = TtsModes(settings, embedded, hq, clock=clock)
    assert modes.select("auto").mode_used == "hq"  # configured, not yet measured
    modes.observe_first_audio("hq", 0.4)
    assert modes.select("auto").mode_used == "hq"
    for _ in range(5):
        modes.observe_first_audio("hq", 3.0)
    selection = modes.select("auto")
    assert selection.mode_used == "fast" and "over" in selection.reason
    assert modes.select("hq").engine is hq  # explicit hq is still honoured
    clock.now += 61  # the estimate is stale: auto probes hq again
    assert modes.select("auto").mode_used == "hq"


def test_auto_avoids_hq_after_a_failure(embedded: EmbeddedTts) -> None:
    clock = FakeClock()
    settings = TtsSettings(hq=TtsSlotSettings(engine="openai", base_url="http://127.0.0.1:9"))
    modes = TtsModes(
        settings, embedded, OpenAITextToSpeech(base_url="http://127.0.0.1:9"), clock=clock
    )
    modes.observe_failure("hq", EngineUnavailable("connection refused"))
    assert modes.select("auto").mode_used == "fast"
    assert modes.status()["hq"]["available"] is False
    clock.now += 31
    assert modes.select("auto").mode_used == "hq"
