"""System management: machine info, model status, preload, warmup."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from avatar.api.auth import Reader, Writer
from avatar.api.ratelimit import limit
from avatar.api.state import AppState, app_state
from avatar.services import system
from avatar.system.gpus import gpu_readings

router = APIRouter(prefix="/api/system", tags=["system"])
State = Annotated[AppState, Depends(app_state)]


@router.get("/info", dependencies=[Reader, limit("system")])
async def info(state: State) -> dict[str, Any]:
    """CPU, RAM, GPUs (free and total VRAM through NVML where present), versions."""
    data = system.machine_info()
    data["placement"] = state.hub.placement.to_dict()
    admission = state.services.get("gpu_admission")
    if admission is not None:
        admission.update_readings(gpu_readings())
        data["admission"] = admission.status()
    data["sessions"] = {"open": state.sessions.open, "max": state.settings.max_sessions}
    return data


@router.get("/models/status", dependencies=[Reader, limit("system")])
async def models_status(state: State) -> dict[str, Any]:
    """Each engine slot: engine, model, loaded, device, load memory, last latency, error."""
    return system.models_status(state.hub)


@router.post("/models/preload", dependencies=[Writer, limit("admin")])
async def preload(state: State) -> dict[str, Any]:
    """Load every configured engine now; reports what loaded and how long it took."""
    return await system.preload(state.hub)


@router.post("/models/warmup", dependencies=[Writer, limit("admin")])
async def warmup(state: State) -> dict[str, Any]:
    """One tiny inference through each engine, timed."""
    return await system.warmup(state.hub)
