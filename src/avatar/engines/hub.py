"""The model manager: builds the configured engines once, shares them, loads and unloads on demand.

Engines are created lazily from settings through the registry; ``preload`` loads them (blocking,
with a progress callback) so the first voice turn is not a cold start; ``status`` reports what is
loaded, where, how much memory its load took and its last observed latency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from avatar.engines.base import (
    ChatModel,
    Engine,
    SpeakerEncoder,
    SpeechToText,
    TurnAnalyzer,
    VoiceActivityDetector,
)
from avatar.engines.health import EngineHealth
from avatar.engines.registry import EngineKind, create_engine
from avatar.engines.tts.modes import TtsModes
from avatar.errors import AvatarError
from avatar.models.store import ModelStore
from avatar.settings import Settings
from avatar.system.placement import apply_placement, plan_for_settings

SLOTS: tuple[str, ...] = ("stt", "llm", "tts.fast", "tts.hq", "speaker", "vad", "turn")


@dataclass(slots=True)
class SlotState:
    """What the hub knows about one engine slot."""

    slot: str
    engine: str | None
    model: str | None
    device: str = "cpu"
    load_s: float | None = None
    memory_mb: float | None = None
    last_latency_ms: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class EngineHub:
    """Owns the engines of one server (or one CLI run)."""

    def __init__(self, settings: Settings, models: ModelStore | None = None) -> None:
        # Devices are decided once, from free VRAM per GPU (CPU where none fits or none exists).
        self.placement = plan_for_settings(settings)
        settings = apply_placement(settings, self.placement)
        self.settings = settings
        self.hq_gate: Callable[[], tuple[bool, str]] | None = None
        self.models = models or ModelStore(
            settings.model_cache_dir, allow_downloads=settings.models.allow_downloads
        )
        self._engines: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.health = EngineHealth()  # which slots' calls are failing now (see /health)
        hq = settings.tts.hq
        self.states: dict[str, SlotState] = {
            "stt": SlotState("stt", settings.stt.engine, settings.stt.model, settings.stt.device),
            "llm": SlotState(
                "llm",
                settings.llm.engine,
                settings.llm.model,
                "cuda" if settings.llm.gpu_layers else "cpu",
            ),
            "tts.fast": SlotState(
                "tts.fast",
                settings.tts.fast.engine,
                settings.tts.fast.model,
                settings.tts.fast.device,
            ),
            "tts.hq": SlotState(
                "tts.hq",
                hq.engine if hq else None,
                hq.model if hq else None,
                hq.device if hq else "cpu",
            ),
            "speaker": SlotState("speaker", settings.speaker.engine, None),
            "vad": SlotState("vad", settings.vad.engine, None),
            "turn": SlotState("turn", settings.turn.engine or None, settings.turn.model),
        }

    # --- access -------------------------------------------------------------------------------

    def _get(self, slot: str) -> Any:
        with self._lock:
            if slot not in self._engines:
                kind, cfg = self._slot_config(slot)
                engine = create_engine(kind, self.states[slot].engine or "", cfg, self.models)
                folder = getattr(engine, "set_conditioning_folder", None)
                if folder is not None:  # cloning engines cache per-profile conditioning on disk
                    folder(self.settings.data_dir / "conditioning")
                self._engines[slot] = engine
            return self._engines[slot]

    def _slot_config(self, slot: str) -> tuple[EngineKind, Any]:
        s = self.settings
        if slot == "tts.hq":
            if s.tts.hq is None:
                raise AvatarError(
                    "hq TTS is not configured",
                    code="engine_unavailable",
                    hint="set AVATAR_TTS__HQ__ENGINE (and its model)",
                )
            return "tts", s.tts.hq
        configs: dict[str, tuple[EngineKind, Any]] = {
            "stt": ("stt", s.stt),
            "llm": ("llm", s.llm),
            "tts.fast": ("tts", s.tts.fast),
            "speaker": ("speaker", s.speaker),
            "vad": ("vad", s.vad),
            "turn": ("turn", s.turn),
        }
        return configs[slot]

    @property
    def stt(self) -> SpeechToText:
        return self._get("stt")  # type: ignore[no-any-return]

    @property
    def llm(self) -> ChatModel:
        return self._get("llm")  # type: ignore[no-any-return]

    def tts(self, quality: str = "fast") -> Any:
        return self._get(f"tts.{quality}")

    @property
    def tts_modes(self) -> TtsModes:
        """The fast and hq TTS slots with the mode selection (``auto`` falls back to fast)."""
        with self._lock:
            modes = self._engines.get("tts.modes")
        if modes is None:
            hq, error = None, None
            if self.settings.tts.hq is not None:
                try:
                    hq = self._get("tts.hq")
                except AvatarError as exc:
                    error = exc
            modes = TtsModes(
                self.settings.tts, self._get("tts.fast"), hq, hq_error=error, hq_gate=self.hq_gate
            )
            with self._lock:
                modes = self._engines.setdefault("tts.modes", modes)
        return modes  # type: ignore[no-any-return]

    @property
    def speaker(self) -> SpeakerEncoder:
        return self._get("speaker")  # type: ignore[no-any-return]

    @property
    def turn(self) -> TurnAnalyzer | None:
        """The acoustic end-of-turn model; None when ``turn.engine`` is empty."""
        if not self.states["turn"].engine:
            return None
        return self._get("turn")  # type: ignore[no-any-return]

    def new_vad(self) -> VoiceActivityDetector:
        """A fresh VAD for one audio stream (VADs are stateful)."""
        kind, cfg = self._slot_config("vad")
        vad = create_engine(kind, self.settings.vad.engine, cfg, self.models)
        vad.load()
        return vad  # type: ignore[no-any-return]

    def forget_voice(self, profile_id: str) -> None:
        """Drop cached cloning conditioning of a deleted voice profile."""
        for engine in list(self._engines.values()):
            cache = getattr(engine, "conditioning", None)
            if cache is not None:
                cache.forget_profile(profile_id)

    def override(self, slot: str, engine: object) -> None:
        """Use ``engine`` for ``slot`` (scripted engines in tests and benchmarks)."""
        with self._lock:
            self._engines[slot] = engine
            self._engines.pop("tts.modes", None)

    def configured_slots(self) -> list[str]:
        return [s for s in SLOTS if self.states[s].engine]

    # --- lifecycle ----------------------------------------------------------------------------

    def load(self, slot: str) -> SlotState:
        """Load one slot's engine (blocking), recording time and memory; errors are recorded."""
        state = self.states[slot]
        if self.is_loaded(slot):
            return state
        rss = psutil.Process().memory_info().rss
        start = time.perf_counter()
        try:
            engine = self._get(slot)
            engine.load()
        except AvatarError as exc:
            state.error = str(exc)
            raise
        state.error = None
        state.load_s = round(time.perf_counter() - start, 3)
        state.memory_mb = round(max(0, psutil.Process().memory_info().rss - rss) / 2**20, 1)
        return state

    def preload(
        self,
        slots: list[str] | None = None,
        on_step: Callable[[str, SlotState | AvatarError], None] | None = None,
    ) -> list[SlotState]:
        """Load the given (default: all configured) slots; failures are reported, not raised."""
        done = []
        for slot in slots or self.configured_slots():
            try:
                result: SlotState | AvatarError = self.load(slot)
            except AvatarError as exc:
                result = exc
            if on_step:
                on_step(slot, result)
            done.append(self.states[slot])
        return done

    def is_loaded(self, slot: str) -> bool:
        engine = self._engines.get(slot)
        return bool(engine is not None and engine.loaded)

    def observe_latency(self, slot: str, seconds: float) -> None:
        self.states[slot].last_latency_ms = round(seconds * 1000, 1)

    def unload(self, slot: str) -> None:
        engine = self._engines.get(slot)
        if engine is not None:
            engine.unload()

    def close(self) -> None:
        self._engines.pop("tts.modes", None)
        for engine in list(self._engines.values()):
            close_engine(engine)
        self._engines.clear()


def close_engine(engine: Engine) -> None:
    """Free ``engine``'s weights and, for threaded engines, its thread."""
    engine.unload()
    shutdown = getattr(engine, "shutdown", None)
    if shutdown:
        shutdown()
