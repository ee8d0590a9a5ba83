"""The LLM context: history kept in whole turns within a token budget."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from avatar.engines.base import ChatMessage
from avatar.pipeline.context import ConversationContext


def words(text: str) -> int:
    return len(text.split())


def context(budget: int, overhead: int = 0) -> ConversationContext:
    return ConversationContext("You are AVATAR.", budget, words, message_overhead_tokens=overhead)


def test_messages_start_with_the_system_prompt_and_keep_order() -> None:
    ctx = context(1000)
    ctx.add_user("hello")
    ctx.add_assistant("hi there")
    ctx.add_user("how are you")

    assert ctx.messages() == [
        ChatMessage("system", "You are AVATAR."),
        ChatMessage("user", "hello"),
        ChatMessage("assistant", "hi there"),
        ChatMessage("user", "how are you"),
    ]


def test_oldest_turns_are_dropped_whole_to_fit_the_budget() -> None:
    ctx = context(budget=3 + 4 + 4 + 2)  # system 3, two turns of 4, newest user 2
    for n in range(5):
        ctx.add_user(f"question {n}")
        ctx.add_assistant(f"answer {n}")
    ctx.add_user("last one")

    messages = ctx.messages()

    assert [m.content for m in messages] == [
        "You are AVATAR.",
        "question 3",
        "answer 3",
        "question 4",
        "answer 4",
        "last one",
    ]
    assert ctx.tokens(messages) <= ctx.budget_tokens


def test_per_message_overhead_counts_against_the_budget() -> None:
    ctx = context(budget=3 + 2 + 4 * 2 + 2 + 1, overhead=1)
    for n in range(3):
        ctx.add_user(f"question {n}")
        ctx.add_assistant(f"answer {n}")
    ctx.add_user("last one")

    messages = ctx.messages()

    assert [m.content for m in messages[1:]] == ["question 2", "answer 2", "last one"]
    assert ctx.tokens(messages) <= ctx.budget_tokens


def test_system_prompt_and_newest_user_message_are_kept_over_budget() -> None:
    ctx = context(budget=5)
    ctx.add_user("an old question")
    ctx.add_assistant("an old answer")
    ctx.add_user("a very long question that alone is over the budget")

    assert ctx.messages() == [
        ChatMessage("system", "You are AVATAR."),
        ChatMessage("user", "a very long question that alone is over the budget"),
    ]


def test_history_is_contiguous_no_older_turn_after_a_dropped_one() -> None:
    ctx = context(budget=3 + 2 + 1 + 2)
    ctx.add_user("short")
    ctx.add_assistant("tiny")
    ctx.add_user("a much longer question here")
    ctx.add_assistant("and a long answer too")
    ctx.add_user("last one")

    assert [m.content for m in ctx.messages()[1:]] == ["last one"]


def test_interrupted_reply_is_stored_as_heard_with_a_marker() -> None:
    ctx = context(1000)
    ctx.add_user("tell me a story")
    ctx.add_assistant("Once upon a time ", interrupted=True)

    assert ctx.messages()[-1] == ChatMessage("assistant", "Once upon a time…")


def test_interrupted_reply_with_nothing_heard_is_not_stored() -> None:
    ctx = context(1000)
    ctx.add_user("tell me a story")
    ctx.add_assistant("", interrupted=True)
    ctx.add_user("actually, a joke")

    assert ctx.history == [ChatMessage("user", "tell me a story actually, a joke")]


def test_roles_alternate_when_messages_of_one_role_follow_each_other() -> None:
    ctx = context(1000)
    ctx.add_assistant("Hello, I am AVATAR.")
    ctx.add_assistant("How can I help?")
    ctx.add_user("hi")
    ctx.add_user("what time is it")

    assert ctx.history == [
        ChatMessage("assistant", "Hello, I am AVATAR. How can I help?"),
        ChatMessage("user", "hi what time is it"),
    ]


def test_system_prompt_can_change_and_clear_keeps_it() -> None:
    ctx = context(1000)
    ctx.add_user("hello")
    ctx.system_prompt = "Speak French."
    ctx.clear()

    assert ctx.messages() == [ChatMessage("system", "Speak French.")]


def test_invalid_budget() -> None:
    with pytest.raises(ValueError):
        context(budget=0)


def sentence(letters: str) -> st.SearchStrategy[str]:
    return st.from_regex(rf"[{letters}]{{1,4}}( [{letters}]{{1,4}}){{0,6}}", fullmatch=True)


TURNS = st.lists(
    st.tuples(sentence("ab"), sentence("cd") | st.just(""), st.booleans()),
    min_size=1,
    max_size=15,
)


@given(turns=TURNS, last=sentence("ef"), budget=st.integers(1, 60), overhead=st.integers(0, 3))
def test_budget_order_and_pairs_hold_for_any_history(
    turns: list[tuple[str, str, bool]], last: str, budget: int, overhead: int
) -> None:
    ctx = context(budget, overhead)
    for user, reply, interrupted in turns:
        ctx.add_user(user)
        ctx.add_assistant(reply, interrupted=interrupted)
    ctx.add_user(last)

    messages = ctx.messages()
    history = ctx.history

    assert messages[0] == ChatMessage("system", "You are AVATAR.")
    assert messages[-1] == history[-1]
    assert messages[-1].role == "user"
    kept = messages[1:]
    assert kept == history[len(history) - len(kept) :]  # a suffix: order kept, oldest dropped
    assert kept[0].role == "user"  # pairs dropped together
    if len(kept) > 1:
        assert ctx.tokens(messages) <= budget
    elif len(history) > 1:  # only the newest user message: the turn before did not fit
        assert ctx.tokens([*messages, *history[-3:-1]]) > budget
