"""What the running server shares between requests, reachable as ``app.state.avatar``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request
from starlette.requests import HTTPConnection

from avatar.engines.hub import EngineHub
from avatar.settings import Settings
from avatar.storage import AudioStore, Database

if TYPE_CHECKING:
    from avatar.api.ratelimit import RateLimits
    from avatar.api.ws.shared_slots import SessionAdmission


@dataclass
class AppState:
    settings: Settings
    hub: EngineHub
    api_token: str
    limits: RateLimits
    sessions: SessionAdmission
    db: Database
    audio: AudioStore
    services: dict[str, Any] = field(default_factory=dict)
    open_sessions: dict[str, Any] = field(default_factory=dict)


def app_state(request: Request) -> AppState:
    return request.app.state.avatar  # type: ignore[no-any-return]


def connection_state(conn: HTTPConnection) -> AppState:
    return conn.app.state.avatar  # type: ignore[no-any-return]
