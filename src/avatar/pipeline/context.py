"""The chat history sent to the LLM, trimmed to a token budget by whole turns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from avatar.engines.base import ChatMessage
from avatar.pipeline.prompts import localized_prompt

INTERRUPTED_MARKER = "…"


@dataclass(slots=True)
class _Turn:
    """One exchange: the user's message and the reply, either of which may be missing."""

    user: ChatMessage | None = None
    assistant: ChatMessage | None = None
    tokens: int = 0

    def messages(self) -> list[ChatMessage]:
        return [m for m in (self.user, self.assistant) if m is not None]


class ConversationContext:
    """Conversation history for one session, sent to the LLM within ``budget_tokens``.

    ``messages()`` always holds the system prompt and the newest turn with a user message; older
    turns (a user message with its reply) are dropped whole, oldest first, until the rest fits.
    ``count_tokens`` is the model's tokenizer (or an estimate); ``message_overhead_tokens`` is
    what the chat template adds per message. Consecutive messages of one role are merged, since
    chat templates expect user and assistant to alternate.
    """

    def __init__(
        self,
        system_prompt: str,
        budget_tokens: int,
        count_tokens: Callable[[str], int],
        *,
        message_overhead_tokens: int = 4,
        interrupted_marker: str = INTERRUPTED_MARKER,
    ) -> None:
        if budget_tokens < 1:
            raise ValueError("budget_tokens must be positive")
        self.budget_tokens = budget_tokens
        self.message_overhead_tokens = message_overhead_tokens
        self.interrupted_marker = interrupted_marker
        self._count = count_tokens
        self._turns: list[_Turn] = []
        self._language: str | None = None
        self.system_prompt = system_prompt

    @property
    def system_prompt(self) -> str:
        """The prompt as configured (before it is written for the turn's language)."""
        return self._prompt

    @system_prompt.setter
    def system_prompt(self, text: str) -> None:
        self._prompt = text
        self._system = ChatMessage("system", localized_prompt(text, self._language))
        self._system_tokens = self._cost(self._system)

    @property
    def language(self) -> str | None:
        """The language of the turn being answered: the system prompt is written for it."""
        return self._language

    @language.setter
    def language(self, tag: str | None) -> None:
        self._language = tag
        self.system_prompt = self._prompt

    @property
    def history(self) -> list[ChatMessage]:
        """Every stored message, oldest first, without the system prompt."""
        return [m for turn in self._turns for m in turn.messages()]

    def add_user(self, text: str) -> None:
        """Add what the user said (merged into a user message not yet answered)."""
        if not text.strip():
            return
        last = self._turns[-1] if self._turns else None
        if last is not None and last.user is not None and last.assistant is None:
            last.user = ChatMessage("user", _join(last.user.content, text))
        else:
            last = _Turn(user=ChatMessage("user", text.strip()))
            self._turns.append(last)
        self._recount(last)

    def add_assistant(self, text: str, *, interrupted: bool = False) -> None:
        """Add a reply: for an ``interrupted`` one, only what was heard, then the marker.

        An empty reply (or an interrupted one of which nothing was heard) is not stored.
        """
        heard = text.strip()
        if not heard:
            return
        if interrupted:
            heard = heard.rstrip(self.interrupted_marker) + self.interrupted_marker
        if not self._turns:
            self._turns.append(_Turn())
        turn = self._turns[-1]
        previous = turn.assistant.content if turn.assistant else ""
        turn.assistant = ChatMessage("assistant", _join(previous, heard))
        self._recount(turn)

    def clear(self) -> None:
        """Forget the history (the system prompt stays)."""
        self._turns.clear()

    def messages(self) -> list[ChatMessage]:
        """System prompt, then the newest turns that fit the budget, oldest first."""
        kept: list[_Turn] = []
        used = self._system_tokens
        required = self._newest_user_turn()
        for index in range(len(self._turns) - 1, -1, -1):
            turn = self._turns[index]
            if index < required and used + turn.tokens > self.budget_tokens:
                break
            kept.append(turn)
            used += turn.tokens
        return [self._system, *(m for turn in reversed(kept) for m in turn.messages())]

    def tokens(self, messages: list[ChatMessage]) -> int:
        """What ``messages`` cost against the budget."""
        return sum(self._cost(m) for m in messages)

    def _newest_user_turn(self) -> int:
        for index in range(len(self._turns) - 1, -1, -1):
            if self._turns[index].user is not None:
                return index
        return -1

    def _recount(self, turn: _Turn) -> None:
        turn.tokens = self.tokens(turn.messages())

    def _cost(self, message: ChatMessage) -> int:
        return self._count(message.content) + self.message_overhead_tokens


def _join(first: str, second: str) -> str:
    return f"{first} {second}".strip()
