"""What the running server shares between requests, reachable as ``app.state.avatar``.

The app factory (:func:`avatar.api.app.create_app`) builds it once at start-up: the composition
root. Route dependencies that read it are in :mod:`avatar.api.deps`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from avatar.api.ratelimit import RateLimits
from avatar.api.turn_metrics import TurnMetrics
from avatar.api.ws.shared_slots import SessionAdmission
from avatar.engines.hub import EngineHub
from avatar.pipeline.session import VoiceSession
from avatar.services.recorder import StorageTurnRecorder
from avatar.services.voices import ProfileVoices
from avatar.settings import Settings
from avatar.storage import AudioStore, Database
from avatar.system.admission import GpuAdmission


@dataclass
class Services:
    """The use cases every voice session and request shares."""

    recorder: StorageTurnRecorder
    voices: ProfileVoices
    metrics: TurnMetrics
    gpu_admission: GpuAdmission


@dataclass
class AppState:
    settings: Settings
    hub: EngineHub
    api_token: str
    limits: RateLimits
    sessions: SessionAdmission
    db: Database
    audio: AudioStore
    services: Services
    open_sessions: dict[str, VoiceSession] = field(default_factory=dict)


def connection_state(conn: HTTPConnection) -> AppState:
    return conn.app.state.avatar
