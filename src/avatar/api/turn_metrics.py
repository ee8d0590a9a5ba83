"""The Prometheus collector of voice turns: one registry per app, fed by every finished turn."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram

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
        self.prompt_cache = Gauge(
            "avatar_llm_prompt_cache_bytes",
            "Bytes held by the LLM's prompt-state cache (llama.cpp states of recent prompts)",
            registry=self.registry,
        )

    def observe(self, metrics: dict[str, float | None], interrupted: bool) -> None:
        for stage in STAGES:
            value = metrics.get(stage)
            if value is not None:
                self.stage.labels(stage=stage.removesuffix("_ms")).observe(value / 1000)
        v2v = metrics.get("voice_to_voice_ms")
        if v2v is not None:
            self.turns.labels(interrupted=str(interrupted).lower()).observe(v2v / 1000)
