"""The OpenAI-compatible chat engine: against a real llama.cpp server, then against fault fakes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from avatar.engines.base import ChatMessage, ChatModel, GenerationOptions
from avatar.engines.llm.openai_remote import OpenAIChat, api_base
from avatar.engines.llm.sse import SseEvent, iter_sse
from avatar.engines.registry import create_engine
from avatar.errors import AvatarError, EngineFailed, EngineTimeout, EngineUnavailable
from avatar.models.store import ModelStore
from avatar.settings import LlmSettings
from avatar.testing.fake_openai import (
    DEFAULT_MODEL,
    DEFAULT_TOKENS,
    FakeMode,
    closed_port,
    fake_state,
    running_fake_openai,
    set_fake_mode,
)

HELLO = [ChatMessage("user", "Say hello.")]
OPTIONS = GenerationOptions(max_tokens=32, temperature=0.0)
CONNECT_S, FIRST_TOKEN_S, READ_S = 1.0, 1.5, 0.5
MARGIN_S = 5.0  # generous: deadlines are behaviour, speed is not

# llama_cpp.server, with the same AMX work-around the local engine applies (see llamacpp.py).
SERVER_BOOT = """
import runpy
from contextlib import nullcontext
from avatar.engines.llm.llamacpp import amx_kernels_built, plain_cpu_weights
with plain_cpu_weights() if amx_kernels_built() else nullcontext():
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def engine_for(base_url: str, model_store: ModelStore, **overrides: Any) -> OpenAIChat:
    fields: dict[str, Any] = {
        "engine": "openai",
        "base_url": base_url,
        "model": DEFAULT_MODEL,
        "connect_timeout_s": CONNECT_S,
        "first_token_timeout_s": FIRST_TOKEN_S,
        "read_timeout_s": READ_S,
    }
    cfg = LlmSettings.model_validate(fields | overrides)
    engine = create_engine("llm", "openai", cfg, model_store)
    assert isinstance(engine, OpenAIChat)
    return engine


async def collect(engine: ChatModel, deltas: list[str] | None = None) -> list[str]:
    received = [] if deltas is None else deltas
    async for delta in engine.stream_chat(HELLO, OPTIONS):
        received.append(delta)
    return received


async def fails_with(engine: ChatModel) -> tuple[AvatarError, float, list[str]]:
    """The typed error a turn ends with, the seconds it took and the deltas before it."""
    deltas: list[str] = []
    start = time.monotonic()
    with pytest.raises(AvatarError) as caught:
        await collect(engine, deltas)
    return caught.value, time.monotonic() - start, deltas


# --- a real OpenAI-compatible peer: llama.cpp's server with SmolLM2 -------------------------


@pytest.fixture(scope="module")
def llama_server(
    model_store: ModelStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = closed_port()
    model = model_store.path("smollm2-135m-instruct")
    cmd = [
        sys.executable,
        "-c",
        SERVER_BOOT,
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        "2",
        "--verbose",
        "false",
    ]
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not answer GET /v1/models within 120 s")
            time.sleep(0.2)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def real(llama_server: str, model_store: ModelStore) -> AsyncIterator[OpenAIChat]:
    engine = engine_for(llama_server, model_store, first_token_timeout_s=60, read_timeout_s=30)
    yield engine
    await engine.aclose()


@pytest.mark.slow
async def test_real_server_streams_a_reply_incrementally(real: OpenAIChat) -> None:
    arrivals: list[float] = []
    deltas: list[str] = []
    async for delta in real.stream_chat(HELLO, OPTIONS):
        arrivals.append(time.monotonic())
        deltas.append(delta)
    assert "".join(deltas).strip()
    assert len(deltas) >= 3
    # Deltas arrive as the server generates them, not all at once after the reply is complete.
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert sum(gap > 0.001 for gap in gaps) >= 2, gaps


@pytest.mark.slow
async def test_real_server_lists_its_model(real: OpenAIChat) -> None:
    models = await real.list_models()
    assert len(models) == 1 and models[0]


@pytest.mark.slow
async def test_real_server_serves_the_next_turn_after_an_early_close(real: OpenAIChat) -> None:
    async with aclosing(real.stream_chat(HELLO, GenerationOptions(max_tokens=200))) as stream:
        first = await anext(stream)
    assert first
    assert "".join(await collect(real)).strip()


# --- faults, injected by the fake server -------------------------------------------------------


async def test_sse_framing_follows_the_event_stream_rules() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in [
            ": keep-alive",
            'data: {"a":',
            "data: 1}",
            "",
            "event: error",
            "data:x\r",
            "",
            "data: [DONE]",
        ]:  # last event has no blank line after it
            yield line

    events = [event async for event in iter_sse(lines())]
    assert events == [SseEvent('{"a":\n1}'), SseEvent("x", "error"), SseEvent("[DONE]")]


async def test_the_fake_speaks_the_protocol_of_the_official_sdk() -> None:
    openai = pytest.importorskip("openai")
    with running_fake_openai(FakeMode.OK) as url:
        async with openai.AsyncOpenAI(base_url=url, api_key="unused") as client:
            stream = await client.chat.completions.create(
                model=DEFAULT_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
            )
            deltas = [c.choices[0].delta.content async for c in stream if c.choices]
    assert "".join(d for d in deltas if d) == "".join(DEFAULT_TOKENS)


def test_base_url_with_or_without_v1_means_the_same_api() -> None:
    assert api_base("http://h:8000") == "http://h:8000/v1"
    assert api_base("http://h:8000/") == "http://h:8000/v1"
    assert api_base("http://h:8000/v1/") == "http://h:8000/v1"
    assert api_base("https://api.example.com/openai/v1") == "https://api.example.com/openai/v1"


def test_settings_without_a_url_name_the_fix(model_store: ModelStore) -> None:
    with pytest.raises(EngineUnavailable) as caught:
        OpenAIChat.from_settings(LlmSettings.model_validate({}), model_store)
    assert "BASE_URL" in (caught.value.hint or "")


async def test_fake_ok_streams_the_scripted_reply(model_store: ModelStore) -> None:
    with running_fake_openai(FakeMode.OK) as url:
        engine = engine_for(url, model_store)
        assert await collect(engine) == list(DEFAULT_TOKENS)
        body = fake_state(url)["requests"][0]
        assert body["stream"] is True and body["model"] == DEFAULT_MODEL
        assert body["messages"] == [{"role": "user", "content": "Say hello."}]
        assert body["max_tokens"] == OPTIONS.max_tokens
        await engine.aclose()


async def test_api_key_is_sent_as_bearer(model_store: ModelStore) -> None:
    with running_fake_openai(FakeMode.OK, api_key="sk-test-123") as url:
        anonymous = engine_for(url, model_store)
        error, _, _ = await fails_with(anonymous)
        assert isinstance(error, EngineFailed) and error.code == "engine_auth"
        keyed = engine_for(url, model_store, api_key="sk-test-123")
        assert await collect(keyed) == list(DEFAULT_TOKENS)
        assert fake_state(url)["authorizations"] == [None, "Bearer sk-test-123"]


async def test_refused_connection_is_engine_unavailable(model_store: ModelStore) -> None:
    with running_fake_openai(FakeMode.REFUSED) as url:
        error, elapsed, _ = await fails_with(engine_for(url, model_store))
    assert isinstance(error, EngineUnavailable)
    assert "BASE_URL" in (error.hint or "")
    assert elapsed < CONNECT_S + MARGIN_S


async def test_connect_that_hangs_hits_the_connect_deadline(model_store: ModelStore) -> None:
    with running_fake_openai(FakeMode.CONNECT_HANG) as url:
        error, elapsed, _ = await fails_with(engine_for(url, model_store))
    assert isinstance(error, EngineTimeout) and error.code == "engine_timeout"
    assert "connect deadline" in error.message
    assert CONNECT_S * 0.9 <= elapsed < CONNECT_S + MARGIN_S


async def test_silence_before_the_first_token_hits_the_first_token_deadline(
    model_store: ModelStore,
) -> None:
    with running_fake_openai(FakeMode.HANG_BEFORE_FIRST_TOKEN) as url:
        error, elapsed, _ = await fails_with(engine_for(url, model_store))
    assert isinstance(error, EngineTimeout)
    assert "first-token deadline" in error.message
    assert FIRST_TOKEN_S * 0.9 <= elapsed < FIRST_TOKEN_S + MARGIN_S


async def test_a_stalled_stream_hits_the_read_deadline(model_store: ModelStore) -> None:
    with running_fake_openai(FakeMode.TRICKLE) as url:  # 1 token/s against a 0.5 s read deadline
        error, elapsed, deltas = await fails_with(engine_for(url, model_store))
    assert isinstance(error, EngineTimeout)
    assert "read deadline" in error.message
    assert deltas == [DEFAULT_TOKENS[0]]
    assert elapsed < 1.0 + READ_S + MARGIN_S


async def test_a_slow_but_steady_stream_within_its_deadlines_completes(
    model_store: ModelStore,
) -> None:
    with running_fake_openai(FakeMode.TRICKLE, tokens=("One", " two", ".")) as url:
        engine = engine_for(url, model_store, read_timeout_s=3.0)
        assert await collect(engine) == ["One", " two", "."]


@pytest.mark.parametrize(
    ("mode", "script", "code", "retryable"),
    [
        (FakeMode.HTTP_500, {}, "engine_server_error", True),
        (FakeMode.HTTP_401, {}, "engine_auth", False),
        (FakeMode.OOM, {}, "engine_overloaded", True),
        (FakeMode.OOM_MIDSTREAM, {}, "engine_overloaded", True),
        (FakeMode.DROP_AFTER_K, {}, "engine_stream_broken", True),
        (FakeMode.DROP_AFTER_K, {"drop_abruptly": True}, "engine_stream_broken", True),
        (FakeMode.MALFORMED_STREAM, {}, "engine_bad_response", False),
    ],
)
async def test_backend_failures_are_typed_and_say_if_a_retry_can_help(
    model_store: ModelStore, mode: FakeMode, script: dict[str, Any], code: str, retryable: bool
) -> None:
    with running_fake_openai(mode, **script) as url:
        error, elapsed, _ = await fails_with(engine_for(url, model_store))
    assert isinstance(error, EngineFailed)
    assert (error.code, error.retryable) == (code, retryable)
    assert error.hint
    assert elapsed < FIRST_TOKEN_S + MARGIN_S


async def test_out_of_memory_carries_the_server_message(model_store: ModelStore) -> None:
    with running_fake_openai(FakeMode.OOM) as url:
        error, _, _ = await fails_with(engine_for(url, model_store))
    assert "CUDA out of memory" in error.message


async def test_a_dropped_stream_delivers_what_came_before_the_drop(
    model_store: ModelStore,
) -> None:
    with running_fake_openai(FakeMode.DROP_AFTER_K, drop_after=3) as url:
        _, _, deltas = await fails_with(engine_for(url, model_store))
    assert deltas == list(DEFAULT_TOKENS[:3])


async def test_an_unknown_model_is_a_permanent_error(model_store: ModelStore) -> None:
    with running_fake_openai(FakeMode.OK) as url:
        engine = engine_for(url, model_store, model="no-such-model")
        error, _, _ = await fails_with(engine)
        assert isinstance(error, EngineFailed)
        assert (error.code, error.retryable) == ("engine_not_found", False)
        assert "no-such-model" in (error.hint or "")
        assert await engine.list_models() == [DEFAULT_MODEL]


@pytest.mark.parametrize("fault", [FakeMode.HTTP_500, FakeMode.HANG_BEFORE_FIRST_TOKEN])
async def test_the_next_turn_works_once_the_backend_recovers(
    model_store: ModelStore, fault: FakeMode
) -> None:
    with running_fake_openai(fault) as url:
        engine = engine_for(url, model_store)
        await fails_with(engine)
        await asyncio.to_thread(set_fake_mode, url, FakeMode.OK)
        assert await collect(engine) == list(DEFAULT_TOKENS)
        await engine.aclose()


async def test_closing_the_iterator_closes_the_http_response(model_store: ModelStore) -> None:
    with running_fake_openai(FakeMode.OK, token_interval_s=0.2, tokens=("x",) * 100) as url:
        engine = engine_for(url, model_store)
        async with aclosing(engine.stream_chat(HELLO, OPTIONS)) as stream:
            assert await anext(stream) == "x"
            assert (await asyncio.to_thread(fake_state, url))["open_streams"] == 1
        deadline = time.monotonic() + MARGIN_S
        while (await asyncio.to_thread(fake_state, url))["open_streams"]:
            assert time.monotonic() < deadline, "the server still streams to a closed iterator"
            await asyncio.sleep(0.05)
        await engine.aclose()


def test_token_count_is_an_estimate(model_store: ModelStore) -> None:
    engine = engine_for("http://127.0.0.1:1/v1", model_store)
    assert engine.count_tokens("") == 0
    assert engine.count_tokens("a" * 400) == 100
    assert engine.capabilities.remote
