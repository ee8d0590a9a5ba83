"""GET /metrics: Prometheus histograms of every voice-turn stage, plus session gauges."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from avatar.api.auth import Reader
from avatar.api.deps import app_state
from avatar.api.state import AppState
from avatar.api.turn_metrics import TurnMetrics

__all__ = ["TurnMetrics", "router"]

router = APIRouter(tags=["system"])


@router.get("/metrics", dependencies=[Reader], response_class=Response)
async def metrics(state: Annotated[AppState, Depends(app_state)]) -> Response:
    """Prometheus text format (scrape with the API token as a bearer token)."""
    collector = state.services.metrics
    collector.sessions.set(len(state.open_sessions))
    hub = state.hub
    if hub.is_loaded("llm"):
        collector.prompt_cache.set(getattr(hub.llm, "prompt_cache_bytes", 0))
    return Response(generate_latest(collector.registry), media_type=CONTENT_TYPE_LATEST)
