"""Chat completions for the OpenAI-compatible API, on the configured chat engine.

The first delta is awaited before a reply starts, so an engine that fails to load, times out or
rejects the prompt is reported with its own HTTP status instead of a broken stream.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from avatar.engines.base import ChatMessage, ChatModel, GenerationOptions, Role
from avatar.engines.health import EngineHealth
from avatar.settings import LlmSettings

MESSAGE_OVERHEAD_TOKENS = 4  # role and separators of the chat template, roughly


def engine_messages(messages: Sequence[tuple[str, str]], system_prompt: str) -> list[ChatMessage]:
    """OpenAI messages as engine messages; ``developer`` is a system message. Without a system
    message, the configured system prompt comes first."""
    roles: dict[str, Role] = {
        "developer": "system",
        "system": "system",
        "user": "user",
        "assistant": "assistant",
    }
    out = [ChatMessage(roles[role], text) for role, text in messages]
    if not any(m.role == "system" for m in out):
        out.insert(0, ChatMessage("system", system_prompt))
    return out


def generation_options(
    cfg: LlmSettings,
    max_tokens: int | None,
    temperature: float | None,
    stop: tuple[str, ...],
    *,
    json_mode: bool = False,
) -> GenerationOptions:
    """The request's options, the configured ones where it gives none."""
    return GenerationOptions(
        max_tokens=max_tokens or cfg.max_tokens,
        temperature=cfg.temperature if temperature is None else temperature,
        stop=stop,
        json_mode=json_mode,
    )


@dataclass
class ChatRun:
    """One generation: identity for the response objects, and what was generated so far."""

    model: str
    messages: list[ChatMessage]
    options: GenerationOptions
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    text: list[str] = field(default_factory=list)

    @property
    def reply(self) -> str:
        return "".join(self.text)


async def start(
    llm: ChatModel, run: ChatRun, health: EngineHealth | None = None
) -> AsyncIterator[str]:
    """Begin generating; raises engine errors here, before the first delta is handed out.
    ``health`` (the hub's) is told whether the engine's calls fail, as voice turns tell it."""
    health = health or EngineHealth()
    stream = llm.stream_chat(run.messages, run.options)
    try:
        with health.watch("llm"):
            first = await anext(stream, None)
    except BaseException:
        await close(stream)
        raise
    health.worked("llm")
    return _deltas(stream, first, run, health)


async def _deltas(
    stream: AsyncIterator[str], first: str | None, run: ChatRun, health: EngineHealth
) -> AsyncIterator[str]:
    # Close this generator (``aclosing``) when the client goes away: that stops the engine.
    try:
        if first is None:
            return
        run.text.append(first)
        yield first
        with health.watch("llm"):
            async for delta in stream:
                run.text.append(delta)
                yield delta
    finally:
        await close(stream)


async def close(stream: AsyncIterator[str]) -> None:
    """Stop a generation early (a no-op when it has ended)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def drain(deltas: AsyncIterator[str]) -> None:
    """Run a started generation to its end (the reply collects in its :class:`ChatRun`)."""
    try:
        async for _ in deltas:
            pass
    finally:
        await close(deltas)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"]

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


async def usage(llm: ChatModel, run: ChatRun) -> Usage:
    """Token counts (exact for local models, estimated for remote ones) and why it stopped."""

    def count() -> tuple[int, int]:
        prompt = sum(llm.count_tokens(m.content) + MESSAGE_OVERHEAD_TOKENS for m in run.messages)
        return prompt, llm.count_tokens(run.reply)

    prompt, completion = await asyncio.to_thread(count)
    finish: Literal["stop", "length"] = "length" if completion >= run.options.max_tokens else "stop"
    return Usage(prompt, completion, finish)
