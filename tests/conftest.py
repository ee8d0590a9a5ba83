"""Shared fixtures: one model cache for the whole run, so packaged parts are joined once."""

from __future__ import annotations

import os

from avatar.system.openmp import OPENMP_ENV

os.environ.update({**OPENMP_ENV, **os.environ})  # as `avatar` does, before any engine loads
import asyncio
import functools
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI

from avatar.api.limits_middleware import HeaderDeadlineH11Protocol
from avatar.audio.pcm import PcmAudio
from avatar.engines.hub import EngineHub
from avatar.engines.tts.piper import PiperTts
from avatar.models.store import ModelStore
from avatar.settings import Settings, default_cache_dir, load_settings
from avatar.testing.processes import closed_port as free_port
from avatar.testing.serving import Served, serve_in_thread

if TYPE_CHECKING:
    from avatar.engines.llm.llamacpp import LlamaCppChat

# The same cache `./run.sh` fills with `avatar models verify`, so parts are joined once.
MODEL_CACHE = Path(os.environ.get("AVATAR_TEST_MODEL_CACHE") or default_cache_dir())


@pytest.fixture(scope="session")
def model_store() -> ModelStore:
    return ModelStore(MODEL_CACHE)


# --- a real server on loopback -------------------------------------------------------------


TEST_TOKEN = "test-token-0123456789abcdef"
__all__ = ["free_port"]  # a port nothing listens on yet, for servers in child processes


@dataclass
class LiveServer:
    """The app serving on a loopback port, with what tests reach into: its state and engines."""

    url: str
    ws_url: str
    token: str
    settings: Settings
    app: FastAPI
    hub: EngineHub
    served: Served

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def state(self) -> Any:
        """``app.state.avatar`` (an :class:`avatar.api.state.AppState`) once started."""
        return self.app.state.avatar


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    # No first-turn warm-up unless a test asks for it: it would take scripted engines through a
    # turn of their own (tests/test_first_turn_warmup.py covers it)
    server = {"warm_up": False, **dict(overrides.pop("server", None) or {})}  # type: ignore[call-overload]
    return load_settings(
        data_dir=data_dir,
        api_token=TEST_TOKEN,
        models={"cache_dir": MODEL_CACHE},
        server=server,
        **overrides,
    )


def scripted_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a server whose engines are scripted: nothing is preloaded."""
    return make_settings(data_dir, server={"preload": False}, **overrides)


@contextmanager
def live_app(
    settings: Settings,
    *,
    hub: EngineHub | None = None,
    models: ModelStore | None = None,
    engines: Mapping[str, object] | None = None,
    port: int = 0,
    http: type = HeaderDeadlineH11Protocol,
    **uvicorn_options: Any,
) -> Iterator[LiveServer]:
    """The one way tests serve the app: ``create_app(settings, hub)`` on a loopback port.

    ``hub`` shares engines already loaded (and stays open); without it a hub of its own is built
    over ``models`` and closed afterwards. ``engines`` replace slots with scripted or failing
    engines (``avatar.testing.fakes``). ``port`` serves again at an earlier address.
    """
    from avatar.api.app import create_app

    own = hub is None
    engine_hub = EngineHub(settings, models) if hub is None else hub
    try:
        for slot, engine in (engines or {}).items():
            engine_hub.override(slot, engine)
        app = create_app(settings, engine_hub)
        options = {"http": http, "ws_max_size": 1 << 20, "lifespan": "on", **uvicorn_options}
        with serve_in_thread(app, port=port, **options) as served:
            token = settings.api_token.get_secret_value() if settings.api_token else ""
            url, ws_url = f"http://{served.host}", f"ws://{served.host}"
            yield LiveServer(url, ws_url, token, settings, app, engine_hub, served)
    finally:
        if own:
            engine_hub.close()


@pytest.fixture(scope="session")
def speaker(model_store: ModelStore) -> Iterator[PiperTts]:
    """Piper without its random noise: the same text gives the same samples on every run, so
    spoken test inputs transcribe the same way every time (see :func:`say_en`)."""
    voice = PiperTts(model_store.path("piper-joe"), deterministic=True)
    yield voice
    voice.shutdown()


def say_en(speaker: PiperTts, text: str) -> PcmAudio:
    """English test speech, identical on every run (a sync helper for fixtures)."""

    async def collect() -> PcmAudio:
        parts = [c async for c in speaker.synthesize_stream(text, language="en")]
        return functools.reduce(PcmAudio.concat, parts)

    return asyncio.run(collect())


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory, model_store: ModelStore) -> Iterator[EngineHub]:
    """The embedded engines, loaded once for every test that needs real models."""
    engines = EngineHub(make_settings(tmp_path_factory.mktemp("hub")), model_store)
    yield engines
    engines.close()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, hub: EngineHub) -> Iterator[LiveServer]:
    """The real app with the real embedded engines on a loopback port."""
    with live_app(make_settings(tmp_path_factory.mktemp("server")), hub=hub) as server:
        yield server


@contextmanager
def loaded_llama(models: ModelStore, **settings: Any) -> Iterator[LlamaCppChat]:
    """The embedded llama.cpp chat engine with ``settings`` (``LlmSettings`` fields), loaded;
    unloaded and shut down afterwards (for module-scoped fixtures of the real-model tests)."""
    from avatar.engines.llm.llamacpp import LlamaCppChat
    from avatar.engines.registry import create_engine
    from avatar.settings import LlmSettings

    engine = create_engine("llm", "llama-cpp", LlmSettings.model_validate(settings), models)
    assert isinstance(engine, LlamaCppChat)
    engine.load()
    try:
        yield engine
    finally:
        engine.unload()
        engine.shutdown()


@contextmanager
def rate_limits(server: LiveServer, **specs: str) -> Iterator[None]:
    """Set ``rate_limits.<name>`` of a running server for a block (the tests of limiting use
    low limits; the defaults are far above what a test sends)."""
    limits = server.app.state.avatar.settings.rate_limits  # type: ignore[attr-defined]
    before = {name: getattr(limits, name) for name in specs}
    for name, spec in specs.items():
        setattr(limits, name, spec)
    try:
        yield
    finally:
        for name, spec in before.items():
            setattr(limits, name, spec)


@pytest.fixture
async def api(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated HTTP client for the live server, with fresh rate-limit counters."""
    from avatar.api.ratelimit import RateLimits

    live_server.state.limits = RateLimits(None)
    async with httpx.AsyncClient(
        base_url=live_server.url, headers=live_server.auth, timeout=120
    ) as client:
        yield client


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis; skipped when absent unless AVATAR_REQUIRE_REDIS=1 (CI)."""
    url = os.environ.get("AVATAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            pass
    except OSError:
        if os.environ.get("AVATAR_REQUIRE_REDIS") == "1":
            pytest.fail("Redis is required (AVATAR_REQUIRE_REDIS=1) but 127.0.0.1:6379 is closed")
        pytest.skip("Redis not reachable at 127.0.0.1:6379")
    return url
