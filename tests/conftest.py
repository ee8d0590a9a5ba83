"""Shared fixtures: one model cache for the whole run, so packaged parts are joined once."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `avatar` sets it (see cli/main.py)
import asyncio
import functools
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from avatar.api.limits_middleware import HeaderDeadlineH11Protocol
from avatar.audio.pcm import PcmAudio
from avatar.engines.hub import EngineHub
from avatar.engines.tts.piper import PiperTts
from avatar.models.store import ModelStore
from avatar.settings import Settings, default_cache_dir, load_settings

# The same cache `./run.sh` fills with `avatar models verify`, so parts are joined once.
MODEL_CACHE = Path(os.environ.get("AVATAR_TEST_MODEL_CACHE") or default_cache_dir())


@pytest.fixture(scope="session")
def model_store() -> ModelStore:
    return ModelStore(MODEL_CACHE)


# --- a real server on loopback -------------------------------------------------------------


TEST_TOKEN = "test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    ws_url: str
    token: str
    settings: Settings
    app: object

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    return load_settings(
        data_dir=data_dir, api_token=TEST_TOKEN, models={"cache_dir": MODEL_CACHE}, **overrides
    )


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


@contextmanager
def serve_app(app: object, settings: Settings) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",  # type: ignore[arg-type]
        ws_max_size=1 << 20,
        http=HeaderDeadlineH11Protocol,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, hub: EngineHub) -> Iterator[LiveServer]:
    """The real app with the real embedded engines on a loopback port."""
    from avatar.api.app import create_app

    settings = make_settings(tmp_path_factory.mktemp("server"))
    app = create_app(settings, hub)
    with serve_app(app, settings) as host:
        yield LiveServer(f"http://{host}", f"ws://{host}", TEST_TOKEN, settings, app)


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

    state = live_server.app.state.avatar  # type: ignore[attr-defined]
    state.limits = RateLimits(None)
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
