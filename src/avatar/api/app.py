"""The app factory: settings in, a FastAPI app out; no import-time globals."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware

from avatar import __version__
from avatar.api import auth
from avatar.api.errors import install_error_handlers
from avatar.api.gate import RequestGate
from avatar.api.limits_middleware import BodyLimitMiddleware
from avatar.api.openapi import install_openapi
from avatar.api.ratelimit import RateLimits
from avatar.api.routes import (
    conversations,
    health,
    metrics,
    openai_compat,
    system,
    voice_profiles,
    web,
)
from avatar.api.security import SecurityHeadersMiddleware
from avatar.api.state import AppState, Services
from avatar.api.turn_metrics import TurnMetrics
from avatar.api.ws import connection as ws_connection
from avatar.api.ws.connection import close_sessions
from avatar.api.ws.shared_slots import session_slots
from avatar.engines.hub import EngineHub
from avatar.services.integrity import DEFAULT_GRACE_S, sweep
from avatar.services.recorder import StorageTurnRecorder
from avatar.services.system import warm_first_turn
from avatar.services.voices import ProfileVoices
from avatar.settings import Settings
from avatar.storage import AudioStore, Database
from avatar.system.admission import GpuAdmission
from avatar.system.gpus import gpu_readings

log = logging.getLogger("avatar")


def login_url(settings: Settings, code: str) -> str:
    """The one-click sign-in link: a one-time code, never the token, in the URL."""
    return f"http://{settings.server.host}:{settings.server.port}/login?code={code}"


def create_app(settings: Settings, hub: EngineHub | None = None) -> FastAPI:
    """Build the server. ``hub`` may be given to share engines (tests, benchmarks)."""
    token = (
        settings.api_token.get_secret_value() if settings.api_token else secrets.token_urlsafe(32)
    )
    guard = auth.LoginGuard()
    if settings.api_token is None:
        # Printed once, like Jupyter: the only place the generated token appears.
        print(f"AVATAR token: {token}", flush=True)
        print(
            f"AVATAR sign-in link (works once): {login_url(settings, guard.new_code())}", flush=True
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        await db.migrate()
        audio = AudioStore(settings.data_dir / "audio")
        # Sweep what a crash left (orphan files, temp files). SQLite means one server owns the
        # folder; with Postgres other processes may be mid-write, so only old leftovers go.
        try:
            await sweep(db, audio, grace_s=0 if db.is_sqlite else DEFAULT_GRACE_S)
        except Exception:  # a failed sweep must not keep the server from starting
            log.exception("start-up sweep of leftover files failed")
        admission = GpuAdmission(
            gpu_readings(),
            sessions_per_gpu=settings.gpu.sessions_per_gpu,
            hq_max_load=settings.gpu.hq_max_load,
            reread=gpu_readings,
        )
        services = Services(
            recorder=StorageTurnRecorder(db, audio),
            voices=ProfileVoices(db, audio),
            metrics=TurnMetrics(),
            gpu_admission=admission,
        )
        state = AppState(
            settings=settings,
            hub=hub or EngineHub(settings),
            api_token=token,
            limits=RateLimits(settings.redis_url),
            sessions=session_slots(settings),
            db=db,
            audio=audio,
            services=services,
        )
        engines = state.hub
        engines.hq_gate = lambda: admission.hq_allowed(engines.placement.gpu_for("tts.hq"))
        app.state.avatar = state
        if settings.server.preload:
            await asyncio.to_thread(state.hub.preload, None, _log_step)
            if settings.server.warm_up:
                log.info("first-turn warm-up: %s", await warm_first_turn(state.hub))
        try:
            yield
        finally:
            await close_sessions(state)
            await state.sessions.aclose()
            await db.dispose()
            if hub is None:
                state.hub.close()

    app = FastAPI(
        title="AVATAR",
        version=__version__,
        lifespan=lifespan,
        description="Private, self-hosted, real-time voice assistant.",
        docs_url=None,  # served behind the token, with packaged assets (install_openapi)
        redoc_url=None,
        openapi_url=None,
    )
    app.state.login_guard = guard
    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestGate)  # outside the body limits: decides before a byte is read
    app.add_middleware(SecurityHeadersMiddleware)
    if "*" not in settings.server.allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=_host_patterns(settings))
    modules = (health, system, voice_profiles, conversations, openai_compat, metrics)
    for module in modules:
        app.include_router(module.router)
    # Flat, in declaration order: FastAPI keeps included routers opaque (see allowed_methods).
    app.state.api_routes = [r for m in modules for r in m.router.routes if hasattr(r, "path")]
    app.include_router(auth.router)
    app.include_router(ws_connection.router)
    web.mount_web(app)  # last: the UI's files at "/" never shadow an API route
    return app


def _host_patterns(settings: Settings) -> list[str]:
    hosts = [h.strip("[]") for h in settings.server.allowed_hosts]
    bind = settings.server.host
    if bind not in ("0.0.0.0", "::"):
        hosts.append(bind)
    return hosts + [f"[{h}]" for h in hosts if ":" in h]


def _log_step(slot: str, result: object) -> None:
    log.info("preload %s: %s", slot, result)
