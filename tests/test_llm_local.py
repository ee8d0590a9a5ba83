"""The llama.cpp chat engine with the real packaged models (Qwen2.5 0.5B and SmolLM2 135M)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import pytest

from avatar.engines.base import ChatMessage, ChatModel, GenerationOptions
from avatar.engines.llm.llamacpp import LlamaCppChat
from avatar.engines.registry import create_engine
from avatar.errors import EngineFailed, ModelError
from avatar.models.store import ModelStore
from avatar.settings import LlmSettings
from conftest import loaded_llama

pytestmark = pytest.mark.slow

GREEDY = GenerationOptions(max_tokens=48, temperature=0.0)
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def qwen(model_store: ModelStore) -> Iterator[LlamaCppChat]:
    settings = {"model": "qwen2.5-0.5b-instruct", "context_tokens": 2048, "threads": 2}
    with loaded_llama(model_store, **settings) as engine:
        yield engine


async def ask(engine: ChatModel, question: str, options: GenerationOptions = GREEDY) -> list[str]:
    messages = [ChatMessage("user", question)]
    return [delta async for delta in engine.stream_chat(messages, options)]


def test_engine_satisfies_the_protocol(qwen: LlamaCppChat) -> None:
    model: ChatModel = qwen  # checked by mypy
    assert model.loaded
    assert qwen.capabilities.streaming and not qwen.capabilities.remote
    assert qwen.capabilities.context_tokens == 2048


async def test_answers_a_factual_question_in_several_deltas(qwen: LlamaCppChat) -> None:
    deltas = await ask(qwen, "What is the capital of France?")
    assert "Paris" in "".join(deltas)
    assert len(deltas) >= 3  # streamed token by token, not in one piece
    assert qwen.last_generation.finish_reason == "stop"


async def test_answers_chinese_in_chinese(qwen: LlamaCppChat) -> None:
    reply = "".join(await ask(qwen, "中国的首都是哪里？"))
    assert CJK.search(reply), reply


async def test_system_prompt_shapes_the_reply(qwen: LlamaCppChat) -> None:
    messages = [
        ChatMessage("system", "You are a pirate. Always begin every reply with the word Arr."),
        ChatMessage("user", "Say hello."),
    ]
    reply = "".join([d async for d in qwen.stream_chat(messages, GREEDY)])
    assert reply.lstrip().lower().startswith("arr"), reply


async def test_closing_the_stream_stops_generation_at_the_next_token(qwen: LlamaCppChat) -> None:
    options = GenerationOptions(max_tokens=400, temperature=0.0)
    messages = [ChatMessage("user", "Count from 1 to 300, separated by commas.")]
    async with aclosing(qwen.stream_chat(messages, options)) as stream:
        received = [await anext(stream) for _ in range(3)]
    assert all(received)
    # The engine thread becomes free long before 400 tokens could have been generated...
    await asyncio.wait_for(qwen.run(lambda: None), timeout=60)
    stats = qwen.last_generation
    # ...because llama.cpp stopped a token or so after the consumer left.
    assert stats.cancelled
    assert stats.finish_reason is None
    assert 3 <= stats.deltas <= 10, stats
    # And the engine serves the next request normally.
    assert "Paris" in "".join(await ask(qwen, "What is the capital of France?"))


async def test_cancelling_the_consumer_task_stops_generation(qwen: LlamaCppChat) -> None:
    started = asyncio.Event()

    async def consume() -> None:
        options = GenerationOptions(max_tokens=400, temperature=0.0)
        async for _ in qwen.stream_chat([ChatMessage("user", "Write a long story.")], options):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(qwen.run(lambda: None), timeout=60)
    assert qwen.last_generation.cancelled
    assert qwen.last_generation.deltas <= 10


async def test_a_prompt_over_the_context_is_a_typed_error(qwen: LlamaCppChat) -> None:
    too_long = "word " * 3000  # > 2048 tokens
    with pytest.raises(EngineFailed) as caught:
        await ask(qwen, too_long)
    assert caught.value.code == "llm_context_overflow"
    assert not caught.value.retryable
    assert "CONTEXT_TOKENS" in (caught.value.hint or "")


def test_counts_tokens_with_the_model_tokenizer(qwen: LlamaCppChat) -> None:
    assert qwen.count_tokens("") == 0
    short = qwen.count_tokens("Hello world")
    assert 1 <= short <= 4
    assert qwen.count_tokens("Hello world. " * 20) > 10 * short


async def test_tiny_smollm2_loads_and_streams(model_store: ModelStore) -> None:
    cfg = LlmSettings.model_validate(
        {"model": "smollm2-135m-instruct", "context_tokens": 1024, "threads": 2}
    )
    engine = LlamaCppChat.from_settings(cfg, model_store)
    assert not engine.loaded  # from_settings builds; the first use loads
    try:
        deltas = await ask(engine, "Say hello.", GenerationOptions(max_tokens=24, temperature=0.0))
        assert engine.loaded
        assert len(deltas) >= 2
        assert "".join(deltas).strip()
    finally:
        engine.unload()
        engine.shutdown()
    assert not engine.loaded


@pytest.mark.parametrize("content", [b"GGUF" + bytes(100), b"not a model at all"])
def test_a_bad_model_file_is_a_model_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(content)
    engine = LlamaCppChat(path)
    with pytest.raises(ModelError) as caught:
        engine.load()
    assert caught.value.code == "model_load_failed"
    assert caught.value.hint
    assert not engine.loaded


def test_a_missing_model_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        LlamaCppChat(tmp_path / "absent.gguf").load()
    assert caught.value.code == "model_missing"


async def test_sessions_taking_turns_reuse_their_cached_prompts_without_changing_replies(
    model_store: ModelStore,
) -> None:
    """Two conversations alternate on one model. With the prompt cache each one's state is kept
    and restored; the replies are exactly those of a model without the cache."""

    def engine(cache_mb: int) -> LlamaCppChat:
        cfg = LlmSettings.model_validate(
            {"context_tokens": 2048, "threads": 2, "prompt_cache_mb": cache_mb}
        )
        chat = create_engine("llm", "llama-cpp", cfg, model_store)
        assert isinstance(chat, LlamaCppChat)
        return chat

    def history(name: str, turns: int) -> list[ChatMessage]:
        messages = [ChatMessage("system", "You are a terse assistant.")]
        for i in range(turns):
            messages += [
                ChatMessage("user", f"{name}, question {i}: name a colour."),
                ChatMessage("assistant", f"Colour {i}: blue."),
            ]
        return messages

    async def talk(chat: LlamaCppChat) -> list[str]:
        replies = []
        for turns in (1, 2):
            for name in ("Alice", "Bob"):
                question = [*history(name, turns), ChatMessage("user", "And a fruit?")]
                replies.append("".join([d async for d in chat.stream_chat(question, GREEDY)]))
        return replies

    cached, plain = engine(64), engine(0)
    try:
        with_cache, without = await talk(cached), await talk(plain)
        assert with_cache == without and all(with_cache)
        cache = cached._model().cache
        assert cache is not None and plain._model().cache is None
        assert len(cache.cache_state) == 4  # one saved state per reply
        states = list(cache.cache_state.values())
        assert all(s.scores.nbytes < 2**20 for s in states)  # not llama.cpp's logits buffer
        assert cache.cache_size == sum(
            s.llama_state_size + s.scores.nbytes + s.input_ids.nbytes for s in states
        )
        assert cache.cache_size <= 64 * 2**20
    finally:
        for chat in (cached, plain):
            chat.unload()
            chat.shutdown()
