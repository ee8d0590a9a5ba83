"""A long conversation whose oldest turns are trimmed keeps the rest of its KV cache.

Without it, once a session's history reached its token budget every turn read the whole history
again (the 30-minute soak of issue 16 fell from 21 turns a minute to 2, turns waiting 15-60 s).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from avatar.engines.base import ChatMessage, GenerationOptions
from avatar.engines.llm.kv_reuse import MIN_SHIFTED, Placement, plan
from avatar.engines.llm.llamacpp import LlamaCppChat
from avatar.models.store import ModelStore
from conftest import loaded_llama

GREEDY = GenerationOptions(max_tokens=24, temperature=0.0)


def tokens(*parts: range | list[int]) -> np.ndarray:
    return np.concatenate([np.asarray(list(p), dtype=np.intc) for p in parts])


def test_a_plain_prefix_is_kept_as_it_is() -> None:
    source = tokens(range(100))
    assert plan(source, tokens(range(100), [7, 8])) == Placement(100)
    assert plan(source, tokens(range(60), [999])) == Placement(60)


def test_dropped_turns_are_closed_over_and_the_rest_moves_back() -> None:
    system, old_turn, kept = range(0, 20), range(1000, 1050), range(2000, 2200)
    source = tokens(system, old_turn, kept, range(5000, 5030))  # + the last reply, generated
    wanted = tokens(system, kept, [7, 7, 7])  # the oldest turn trimmed, new words at the end
    placed = plan(source, wanted)
    assert placed == Placement(prefix=20, gap_end=70, moved=200)
    assert plan(source, wanted, gaps=False) == Placement(20)  # a model that cannot shift
    assert placed.reused == 220
    assert np.array_equal(source[placed.gap_end : placed.gap_end + placed.moved], wanted[20:220])


def test_a_short_match_after_a_gap_is_not_worth_moving() -> None:
    source = tokens(range(20), range(1000, 1050), range(2000, 2000 + MIN_SHIFTED - 1))
    wanted = tokens(range(20), range(2000, 2000 + MIN_SHIFTED - 1), [5])
    assert plan(source, wanted) == Placement(20)


@pytest.fixture(scope="module")
def chat(model_store: ModelStore) -> Iterator[LlamaCppChat]:
    with loaded_llama(model_store, context_tokens=2048, prompt_cache_mb=64) as engine:
        yield engine


def counting_evals(chat: LlamaCppChat) -> Callable[[], int]:
    """Count the tokens llama.cpp reads (prompt and generated) from now on."""
    llama = chat._model()
    seen = [0]
    original = llama.eval

    def counted(batch: Any) -> None:
        seen[0] += len(batch)
        original(batch)

    llama.eval = counted  # type: ignore[method-assign]
    return lambda: seen[0]


def history(turns: range) -> list[ChatMessage]:
    messages = [ChatMessage("system", "You are a helpful assistant. Answer in one sentence.")]
    for i in turns:
        messages += [
            ChatMessage("user", f"Tell me fact number {i} about the planets of the solar system."),
            ChatMessage(
                "assistant",
                f"Fact {i}: the planets orbit the Sun on nearly the same plane, and the four inner"
                " ones are small and rocky while the outer ones are large.",
            ),
        ]
    return messages


async def test_a_trimmed_history_reads_only_its_new_words(chat: LlamaCppChat) -> None:
    question = ChatMessage("user", "What is the capital of France?")
    first = [*history(range(0, 8)), ChatMessage("user", "Thanks.")]
    reply = "".join([d async for d in chat.stream_chat(first, GREEDY)])
    # the session's next prompt: the oldest turn trimmed, the last exchange and a new question
    trimmed = [
        *history(range(1, 8)),
        ChatMessage("user", "Thanks."),
        ChatMessage("assistant", reply),
        question,
    ]
    llama = chat._model()
    prompt = chat._prompter(llama).prompt([{"role": m.role, "content": m.content} for m in trimmed])
    assert prompt is not None
    total = len(prompt.tokens)
    read = counting_evals(chat)
    answer = "".join([d async for d in chat.stream_chat(trimmed, GREEDY)])
    assert total > 400
    assert read() < 80 + GREEDY.max_tokens  # the new question and the reply, not ~450 tokens
    assert "Paris" in answer


async def test_a_trimmed_history_is_found_in_the_prompt_cache_after_another_session(
    chat: LlamaCppChat,
) -> None:
    first = [*history(range(10, 18)), ChatMessage("user", "Thanks.")]
    reply = "".join([d async for d in chat.stream_chat(first, GREEDY)])
    other = [ChatMessage("system", "Be brief."), ChatMessage("user", "Name a colour.")]
    assert "".join([d async for d in chat.stream_chat(other, GREEDY)])  # another session's turn
    trimmed = [
        *history(range(11, 18)),
        ChatMessage("user", "Thanks."),
        ChatMessage("assistant", reply),
        ChatMessage("user", "How many days are there in a week?"),
    ]
    read = counting_evals(chat)
    answer = "".join([d async for d in chat.stream_chat(trimmed, GREEDY)])
    assert read() < 80 + GREEDY.max_tokens
    assert "7" in answer or "seven" in answer.lower()


async def test_reading_ahead_leaves_only_the_next_words_to_read(chat: LlamaCppChat) -> None:
    conversation = [*history(range(20, 22)), ChatMessage("user", "Thanks.")]
    reply = "".join([d async for d in chat.stream_chat(conversation, GREEDY)])
    stored = [*conversation, ChatMessage("assistant", reply)]
    assert 0 < await chat.read_ahead(stored) < 12  # the reply's end and the next user header
    assert await chat.read_ahead(stored) == 0  # already there
    words = "What is the capital of France"
    llama = chat._model()
    read = counting_evals(chat)
    probability = await chat.end_of_turn_probability([*stored, ChatMessage("user", words)])
    assert probability is not None and 0.0 <= probability <= 1.0
    assert read() <= len(llama.tokenize(words.encode(), add_bos=False)) + 1  # the words only
