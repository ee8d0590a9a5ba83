"""The app factory: settings in, a FastAPI app out; no import-time globals."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from avatar import __version__
from avatar.api.routes import health
from avatar.api.state import AppState
from avatar.engines.hub import EngineHub
from avatar.settings import Settings

log = logging.getLogger("avatar")


def create_app(settings: Settings, hub: EngineHub | None = None) -> FastAPI:
    """Build the server. ``hub`` may be given to share engines (tests, benchmarks)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = AppState(settings=settings, hub=hub or EngineHub(settings))
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        app.state.avatar = state
        if settings.server.preload:
            await asyncio.to_thread(state.hub.preload, None, _log_step)
        yield
        if hub is None:
            state.hub.close()

    app = FastAPI(title="AVATAR", version=__version__, lifespan=lifespan)
    app.include_router(health.router)
    return app


def _log_step(slot: str, result: object) -> None:
    log.info("preload %s: %s", slot, result)
