"""GET /metrics: Prometheus histograms of every voice-turn stage, plus session gauges."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)

from avatar.api.auth import Reader
from avatar.api.state import AppState, app_state

STAGES = (
    "endpointing_ms",
    "stt_ms",
    "llm_first_token_ms",
    "first_text_ms",
    "tts_first_audio_ms",
    "voice_to_voice_ms",
)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class TurnMetrics:
    """One registry per app (no import-time globals), fed by every finished turn."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage = Histogram(
            "avatar_turn_stage_seconds",
            "Voice turn stage latency (from the end of the user's speech)",
            ["stage"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.turns = Histogram(
            "avatar_turn_voice_to_voice_seconds",
            "End of user speech to first reply audio",
            ["interrupted"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.sessions = Gauge(
            "avatar_voice_sessions", "Open voice sessions", registry=self.registry
        )

    def observe(self, metrics: dict[str, float | None], interrupted: bool) -> None:
        for stage in STAGES:
            value = metrics.get(stage)
            if value is not None:
                self.stage.labels(stage=stage.removesuffix("_ms")).observe(value / 1000)
        v2v = metrics.get("voice_to_voice_ms")
        if v2v is not None:
            self.turns.labels(interrupted=str(interrupted).lower()).observe(v2v / 1000)


router = APIRouter(tags=["system"])


@router.get("/metrics", dependencies=[Reader], response_class=Response)
async def metrics(state: Annotated[AppState, Depends(app_state)]) -> Response:
    """Prometheus text format (scrape with the API token as a bearer token)."""
    collector: TurnMetrics = state.services["metrics"]
    collector.sessions.set(len(state.open_sessions))
    return Response(generate_latest(collector.registry), media_type=CONTENT_TYPE_LATEST)
