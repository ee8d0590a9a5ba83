"""What callers hand to the repositories, and the checks every value passes before storage."""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from avatar.storage.common import clean_text
from avatar.storage.errors import InvalidInput
from avatar.storage.tables import TTS_MODES

TtsMode = Literal["fast", "hq"]
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
TITLE_CHARS = 80
LANGUAGE_CHARS = 16
NAME_CHARS = 100
STATUS_CHARS = 32


@dataclass(frozen=True, slots=True)
class NewTurn:
    """What the pipeline records for one exchange; audio paths come from :class:`AudioStore`."""

    user_text: str = ""
    assistant_text: str = ""
    heard_text: str | None = None
    heard_ms: float | None = None  # playback position the user heard up to, when interrupted
    language: str | None = None
    interrupted: bool = False
    user_audio: str | None = None
    assistant_audio: str | None = None
    tts_mode: TtsMode = "fast"
    user_audio_s: float | None = None
    assistant_audio_s: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def new_session_id() -> str:
    return uuid.uuid4().hex


def check_session_id(session_id: str) -> str:
    if not SESSION_ID.fullmatch(session_id):
        raise InvalidInput(
            "session_id must be 1-64 characters of letters, digits, '_' or '-'",
            hint="omit it to let the server make one",
        )
    return session_id


def check_options(language: str | None, tts_mode: str) -> None:
    if language is not None and not 0 < len(language) <= LANGUAGE_CHARS:
        raise InvalidInput(f"language must be 1-{LANGUAGE_CHARS} characters (e.g. 'en', 'zh')")
    if tts_mode not in TTS_MODES:
        raise InvalidInput(f"tts_mode must be one of {', '.join(TTS_MODES)}, got {tts_mode!r}")


def check_heard_ms(heard_ms: float | None) -> float | None:
    """A heard position in ms: finite and >= 0, or None."""
    if heard_ms is not None and not (math.isfinite(heard_ms) and heard_ms >= 0):
        raise InvalidInput(f"heard_ms must be a finite number >= 0, got {heard_ms}")
    return heard_ms


def make_title(user_text: str) -> str | None:
    words = " ".join(clean_text(user_text).split())
    if len(words) <= TITLE_CHARS:
        return words or None
    return words[: TITLE_CHARS - 1].rstrip() + "…"


@dataclass(frozen=True, slots=True)
class NewVoiceProfile:
    """A profile to store; ``audio`` is a path from :class:`AudioStore` (category ``profiles``)."""

    name: str
    audio: str
    sample_rate: int
    duration_s: float
    description: str = ""
    reference_text: str = ""
    quality: dict[str, Any] = field(default_factory=dict)
    embedding: bytes | None = None
    engine_status: str = "packaged_voice"


def check_name(name: str) -> str:
    """Trimmed name of 1-100 characters."""
    name = clean_text(name).strip()
    if not 0 < len(name) <= NAME_CHARS:
        raise InvalidInput(f"voice profile name must be 1-{NAME_CHARS} characters")
    return name


def check_profile(profile: NewVoiceProfile) -> None:
    if profile.sample_rate <= 0:
        raise InvalidInput(f"sample_rate must be positive, got {profile.sample_rate}")
    if not (math.isfinite(profile.duration_s) and profile.duration_s >= 0):
        raise InvalidInput(f"duration_s must be a finite number >= 0, got {profile.duration_s}")
    check_status(profile.engine_status)


def check_status(engine_status: str) -> str:
    if not 0 < len(engine_status) <= STATUS_CHARS:
        raise InvalidInput(f"engine_status must be 1-{STATUS_CHARS} characters")
    return engine_status
