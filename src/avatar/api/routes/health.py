"""GET /health: is the server up, and are its models loaded."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from avatar import __version__
from avatar.api.state import AppState, app_state

router = APIRouter(tags=["system"])


@router.get("/health")
async def health(state: Annotated[AppState, Depends(app_state)]) -> dict[str, Any]:
    """Liveness plus model readiness: ``degraded`` while a configured engine failed to load."""
    hub = state.hub
    models = {
        slot: {
            "engine": hub.states[slot].engine,
            "loaded": hub.is_loaded(slot),
            "error": hub.states[slot].error,
        }
        for slot in hub.configured_slots()
    }
    degraded = any(m["error"] for m in models.values())
    return {"status": "degraded" if degraded else "ok", "version": __version__, "models": models}
