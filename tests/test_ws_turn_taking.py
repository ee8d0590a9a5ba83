"""Turn-taking with the real models over the real WebSocket, on fixed clips streamed in real time.

The server runs the default configuration (smart-turn and the chat model's end-of-turn
probability on, speculative replies on). Questions with a 700 ms pause are cut where the word
before the pause ends (:mod:`avatar.bench.hesitation`, word times from faster-whisper).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from avatar.audio.resample import resample
from avatar.bench.hesitation import read_wav, split, whisper_for_words
from avatar.engines.hub import EngineHub
from avatar.engines.tts.piper import PiperTts
from conftest import say_en
from wsclient import ChatClient, connect, silence, to_pcm16k

ZH_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "audio" / "zh"


@pytest.fixture(scope="module")
def whisper(hub: EngineHub) -> Any:
    return whisper_for_words(hub)


@pytest.fixture(scope="module")
def question(speaker: PiperTts) -> bytes:
    return to_pcm16k(say_en(speaker, "What is the capital of France?"))


@pytest.fixture(scope="module")
def paused_question(speaker: PiperTts, whisper: Any) -> bytes:
    text = "What is the capital | of Japan?"
    audio = resample(say_en(speaker, text.replace(" |", "")), 16_000)
    return to_pcm16k(split(whisper, "piper-joe", text, audio, "en").paused())


@pytest.fixture(scope="module")
def paused_mandarin(whisper: Any) -> bytes:
    text = "欢迎大家来体验|达摩院推出的语音识别模型"
    clip = split(whisper, "human-zh", text, read_wav(ZH_DIR / "welcome.wav"), "zh")
    return to_pcm16k(clip.paused())


async def one_turn(live_server: Any, pcm: bytes, *, trailing_s: float = 2.5) -> ChatClient:
    """Stream ``pcm`` in real time, then ``trailing_s`` of silence; wait for a turn to end."""
    async with connect(live_server) as ws:
        client = ChatClient(ws)
        await client.until(lambda e: e["type"] == "session_started")
        await client.stream(silence(0.3) + pcm + silence(trailing_s), realtime=1.0)
        await client.until(lambda e: e["type"] == "turn_end")
        await client.send_json({"type": "ping"})  # anything said after the first turn
        await client.until(lambda e: e["type"] == "pong")
    return client


def finals(client: ChatClient) -> list[str]:
    return [e["text"] for e in client.of("transcript") if e["final"]]


async def test_a_complete_question_ends_before_the_fallback(
    live_server, hub: EngineHub, question: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a fallback (and a starvation watchdog) out of reach, so a loaded machine's slow models
    # cannot decide the outcome (the 1 s watchdog ended this turn once on a slow 2-core VM,
    # 1.3 s after the speech, before the models had answered)
    monkeypatch.setattr(hub.settings.turn, "fallback_silence_ms", 6000)
    monkeypatch.setattr(hub.settings.turn, "starvation_ms", 6000)
    client = await one_turn(live_server, question, trailing_s=4.0)
    (end,) = client.of("turn_end")
    metrics = end["metrics"]
    assert metrics["endpoint_reason"] == "model_complete", metrics
    assert metrics["endpointing_ms"] < 6000 and metrics["end_of_turn_probability"] >= 0.5
    assert metrics["speculative"] == 1.0 and "paris" in end["text"].lower()


async def test_a_pause_mid_sentence_stays_one_turn(live_server, paused_question) -> None:
    client = await one_turn(live_server, paused_question)
    (text,) = finals(client)
    assert text.lower().startswith("what is") and "japan" in text.lower()  # both halves
    assert len(client.of("turn_end")) == 1


async def test_a_mandarin_pause_stays_one_turn(live_server, paused_mandarin) -> None:
    client = await one_turn(live_server, paused_mandarin)
    (text,) = finals(client)
    assert "大家" in text and "模型" in text  # both halves (Whisper may write traditional)
    assert len(client.of("turn_end")) == 1


async def test_a_client_that_stops_sending_gets_its_answer(live_server, question) -> None:
    client = await one_turn(live_server, question, trailing_s=0.0)  # the stream stops at the word
    (end,) = client.of("turn_end")
    assert end["metrics"]["endpoint_reason"] in ("starvation", "model_complete")
    assert "paris" in end["text"].lower()
