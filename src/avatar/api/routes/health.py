"""GET /health: is the server up, and are its database, models and disk well."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from avatar import __version__
from avatar.api.auth import presented_token, token_matches
from avatar.api.deps import app_state, limit
from avatar.api.schemas.system import HealthAnonymousPublic, HealthPublic
from avatar.api.state import AppState
from avatar.redaction import strip_all, strip_credentials

router = APIRouter(tags=["system"])
MIN_FREE_DISK_MB = 500


@router.get("/health", dependencies=[limit("health")])
async def health(
    request: Request, state: Annotated[AppState, Depends(app_state)]
) -> HealthPublic | HealthAnonymousPublic:
    """``ok``, or ``degraded`` with the reason: database down, a model failed to load, an
    engine's calls are failing (a remote server down or erroring), disk nearly full.

    Without the token only the status and, per failing slot, its error code: engine errors
    name hosts and model paths, which are for the owner only."""
    report = await _report(state)
    if token_matches(state, presented_token(request)):
        return HealthPublic.model_validate(report)
    failing = [
        {"slot": slot, "code": "load_failed" if m["error"] else m["failing"]["code"]}
        for slot, m in report["models"].items()
        if m["error"] or m["failing"]
    ]
    return HealthAnonymousPublic.model_validate({"status": report["status"], "failing": failing})


async def _report(state: AppState) -> dict[str, Any]:
    hub = state.hub
    faults = hub.health.faults()
    models = {
        slot: {
            "engine": hub.states[slot].engine,
            "loaded": hub.is_loaded(slot),
            "error": strip_credentials(hub.states[slot].error or "") or None,
            "failing": asdict(faults[slot]) if slot in faults else None,
        }
        for slot in hub.configured_slots()
    }
    database = strip_all(await state.db.check())
    free_mb = shutil.disk_usage(state.settings.data_dir).free / 2**20
    disk = {"free_mb": round(free_mb), "ok": free_mb >= MIN_FREE_DISK_MB}
    problems = [f"model {s}: {m['error']}" for s, m in models.items() if m["error"]]
    problems += [f"engine {s} failing ({f.code}): {f.message}" for s, f in faults.items()]
    problems += [] if database["ok"] else ["database unreachable"]
    problems += [] if disk["ok"] else ["disk nearly full"]
    return {
        "status": "degraded" if problems else "ok",
        "version": __version__,
        "problems": problems,
        "database": database,
        "models": models,
        "disk": disk,
        "sessions": {"open": state.sessions.open, "max": state.settings.max_sessions},
    }
