"""System management: machine info, model status, preload, warmup."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from avatar.api.auth import Reader, Writer
from avatar.api.deps import app_state, limit
from avatar.api.schemas.system import (
    ModelsStatusPublic,
    PreloadPublic,
    SystemInfoPublic,
    WarmupPublic,
)
from avatar.api.state import AppState
from avatar.services import system
from avatar.system.gpus import gpu_readings

router = APIRouter(prefix="/api/system", tags=["system"])
State = Annotated[AppState, Depends(app_state)]


@router.get("/info", dependencies=[Reader, limit("system")])
async def info(state: State) -> SystemInfoPublic:
    """CPU, RAM, GPUs (free and total VRAM through NVML where present), versions."""
    data = system.machine_info()
    data["placement"] = state.hub.placement.to_dict()
    admission = state.services.gpu_admission
    admission.update_readings(gpu_readings())
    data["admission"] = admission.status()
    data["sessions"] = {"open": state.sessions.open, "max": state.settings.max_sessions}
    return SystemInfoPublic.model_validate(data)


@router.get("/models/status", dependencies=[Reader, limit("system")])
async def models_status(state: State) -> ModelsStatusPublic:
    """Each engine slot: engine, model, loaded, device, load memory, last latency, error."""
    return ModelsStatusPublic.model_validate(system.models_status(state.hub))


@router.post("/models/preload", dependencies=[Writer, limit("admin")])
async def preload(state: State) -> PreloadPublic:
    """Load every configured engine now; reports what loaded and how long it took."""
    return PreloadPublic.model_validate(await system.preload(state.hub))


@router.post("/models/warmup", dependencies=[Writer, limit("admin")])
async def warmup(state: State) -> WarmupPublic:
    """One tiny inference through each engine, timed."""
    return WarmupPublic.model_validate(await system.warmup(state.hub))
