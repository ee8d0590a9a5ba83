"""What the running server shares between requests, reachable as ``app.state.avatar``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from avatar.engines.hub import EngineHub
from avatar.settings import Settings


@dataclass
class AppState:
    settings: Settings
    hub: EngineHub


def app_state(request: Request) -> AppState:
    return request.app.state.avatar  # type: ignore[no-any-return]
