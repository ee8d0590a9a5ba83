"""Response bodies of ``/api/system/*``: typed, so the OpenAPI document says what comes back.

Deep, engine-specific parts (placement plans, GPU admission) stay open objects; what a client
reads to show a status page is typed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class CpuPublic(BaseModel):
    model: str
    logical_cores: int | None
    load_pct: float


class MemoryPublic(BaseModel):
    total_mb: int
    available_mb: int
    process_rss_mb: int


class GpuPublic(BaseModel):
    index: int
    name: str
    total_mb: float
    free_mb: float
    used_mb: float
    utilization_pct: float | None


class SessionsPublic(BaseModel):
    open: int
    max: int


class SystemInfoPublic(BaseModel):
    """``GET /api/system/info``: the machine, this process and where each engine runs."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "avatar_version": "0.1.0",
                    "python": "3.11.7",
                    "platform": "Linux-6.1.0-x86_64-with-glibc2.36",
                    "cpu": {"model": "x86_64", "logical_cores": 2, "load_pct": 12.5},
                    "memory": {"total_mb": 24000, "available_mb": 21000, "process_rss_mb": 1180},
                    "gpus": [],
                    "versions": {"faster-whisper": "1.2.1", "llama-cpp-python": "0.3.36"},
                    "uptime_s": 42.0,
                    "placement": {"placements": [], "gpus": []},
                    "sessions": {"open": 1, "max": 16},
                }
            ]
        }
    )

    avatar_version: str
    python: str
    platform: str
    cpu: CpuPublic
    memory: MemoryPublic
    gpus: list[GpuPublic]
    versions: dict[str, str]
    uptime_s: float
    placement: dict[str, Any] = Field(description="Where each engine was placed, and why.")
    admission: dict[str, Any] | None = Field(None, description="GPU session admission.")
    sessions: SessionsPublic


class SlotStatusPublic(BaseModel):
    slot: str
    engine: str | None
    model: str | None
    device: str
    load_s: float | None
    memory_mb: float | None
    last_latency_ms: float | None
    error: str | None
    configured: bool
    loaded: bool
    placement: dict[str, Any] | None


class ModelsStatusPublic(BaseModel):
    """``GET /api/system/models/status``: every engine slot and the TTS modes."""

    slots: dict[str, SlotStatusPublic]
    tts_modes: dict[str, dict[str, Any]]
    default_tts_mode: str


class PreloadSlotPublic(BaseModel):
    slot: str
    engine: str | None
    loaded: bool
    load_s: float | None
    error: str | None


class PreloadPublic(BaseModel):
    """``POST /api/system/models/preload``: the whole call's time and each slot's load time."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "took_s": 3.912,
                    "slots": [
                        {
                            "slot": "stt",
                            "engine": "whisper",
                            "loaded": True,
                            "load_s": 0.8,
                            "error": None,
                        },
                    ],
                }
            ]
        }
    )

    took_s: float
    slots: list[PreloadSlotPublic]


class WarmupStepPublic(BaseModel):
    slot: str
    ok: bool
    took_ms: float | None = None
    error: str | None = None
    code: str | None = None


class WarmupPublic(BaseModel):
    """``POST /api/system/models/warmup``: one tiny inference per engine, timed."""

    took_s: float
    steps: list[WarmupStepPublic]


class SlotHealthPublic(BaseModel):
    engine: str | None
    loaded: bool
    error: str | None = Field(description="Why the model failed to load (credentials stripped).")
    failing: dict[str, Any] | None = Field(description="The engine's recent calls failing.")


class DiskPublic(BaseModel):
    free_mb: int
    ok: bool


class HealthPublic(BaseModel):
    """``GET /health`` with the token: the status and everything behind it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ok",
                    "version": "0.2.0",
                    "problems": [],
                    "database": {"ok": True, "dialect": "sqlite"},
                    "models": {
                        "stt": {
                            "engine": "faster-whisper",
                            "loaded": True,
                            "error": None,
                            "failing": None,
                        },
                    },
                    "disk": {"free_mb": 81234, "ok": True},
                    "sessions": {"open": 0, "max": 16},
                }
            ]
        }
    )

    status: Literal["ok", "degraded"]
    version: str
    problems: list[str]
    database: dict[str, Any]
    models: dict[str, SlotHealthPublic]
    disk: DiskPublic
    sessions: SessionsPublic


class FailingSlotPublic(BaseModel):
    slot: str
    code: str


class HealthAnonymousPublic(BaseModel):
    """``GET /health`` without the token: the status and which slots fail, with codes only."""

    status: Literal["ok", "degraded"]
    failing: list[FailingSlotPublic]
