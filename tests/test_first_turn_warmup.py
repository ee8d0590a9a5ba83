"""The start-up warm-up: the first question after start finds the engines warm and the system
prompt already read, and a warm-up that fails does not stop the server."""

from __future__ import annotations

from pathlib import Path

import httpx

from avatar.engines.hub import EngineHub
from avatar.models.store import ModelStore
from avatar.pipeline.context import ConversationContext
from avatar.testing.fakes import ScriptedChat, ScriptedStt, ToneTts
from conftest import live_app, make_settings


def _first_conversation(hub: EngineHub, prompt: str) -> ConversationContext:
    """What a new English session's chat model reads before the user's first words."""
    llm = hub.settings.llm
    context = ConversationContext(prompt, llm.context_tokens // 2, hub.llm.count_tokens)
    context.language = "en"
    return context


async def test_the_first_turn_finds_the_system_prompt_read(tmp_path: Path, hub: EngineHub) -> None:
    hub.load("llm")  # through the hub, as the server does (its load time is recorded)
    # Another conversation in the model's cache, as after a session with another prompt
    other = _first_conversation(hub, "You are a pirate. Say arr.")
    other.language = None
    assert await hub.llm.read_ahead(other.messages()) > 0
    first = _first_conversation(hub, hub.settings.llm.system_prompt).messages()

    with live_app(make_settings(tmp_path, server={"warm_up": True}), hub=hub):
        read_now = await hub.llm.read_ahead(first)

    assert read_now == 0  # the warm-up read it: the first turn reads only the user's words


async def test_a_failed_warm_up_does_not_stop_the_server(
    tmp_path: Path, model_store: ModelStore
) -> None:
    stt = ScriptedStt("Hello, what time is it?")
    engines = {"stt": stt, "tts.fast": ToneTts(), "llm": ScriptedChat("Hi.", fail_after=0)}
    settings = make_settings(tmp_path, server={"warm_up": True})
    with live_app(settings, models=model_store, engines=engines) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=server.auth) as client:
            health = await client.get("/health")

    assert len(stt.heard) == 1  # the warm-up ran: it heard its question, then the model failed
    assert health.status_code == 200
