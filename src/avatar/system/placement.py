"""VRAM-aware placement: which device each engine runs on, and why.

Standard library only (``scripts/gpu_check.py`` runs it where avatar's dependencies are missing).

How a plan is made (:func:`plan_placement`):
1. Engines with a fixed device keep it: ``cpu``, ``cuda:N``, remote engines, CPU-only engines.
   A ``cuda:N`` need is booked against GPU N; the reason warns when it does not fit or GPU N is
   not visible (the setting is respected; the engine will then fail to load with its own error).
2. The others (``auto``; ``cuda`` = any GPU) are placed largest first, each onto the GPU with the
   most free memory left that still keeps the safety margin free afterwards (worst-fit
   decreasing: engines spread across cards, and so does their compute). ``auto`` falls back to
   CPU when no GPU fits; ``cuda`` takes the emptiest GPU anyway, with a warning.
3. The first engine on a GPU also books the CUDA context (one per process and device).
The safety margin is ``max(margin_mb, margin_fraction * total)`` of the card: room for
activations that grow with input length, the allocator's fragmentation and other processes.

Estimates (:func:`needs_from_settings`) are the engine's own memory without the CUDA context; their
sources are in ``basis`` and in docs/GPU.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avatar.system.gpus import GpuReading, gpu_readings

if TYPE_CHECKING:
    from avatar.settings import LlmSettings, Settings, SttSettings, TtsSlotSettings

# Per process and device: 619 MB measured on an H100 (torch 2.11, CUDA 13.0, scripts/gpu_check.py).
CUDA_CONTEXT_MB = 620.0
DEFAULT_MARGIN_MB = 1024.0
DEFAULT_MARGIN_FRACTION = 0.05
GPU_ENGINES = frozenset({"faster-whisper", "llama-cpp", "f5-tts", "cosyvoice2", "piper"})
REMOTE_ENGINES = frozenset({"openai"})
FIRST_GPU_ONLY = frozenset({"cosyvoice2"})  # its model picks "the" CUDA device (docs/GPU.md)


@dataclass(frozen=True, slots=True)
class EngineNeed:
    """What one engine slot asks of the machine."""

    slot: str
    engine: str
    model: str | None
    vram_mb: float  # the engine's own memory, without the CUDA context
    requested: str = "auto"  # auto | cpu | cuda | cuda:N
    basis: str = ""  # where the estimate comes from
    first_gpu_only: bool = False


@dataclass(frozen=True, slots=True)
class Placement:
    """The device chosen for one slot and why (``ok`` False: the configuration will not work)."""

    slot: str
    engine: str
    model: str | None
    requested: str
    device: str  # cpu | cuda:N | cuda | remote
    gpu_index: int | None
    vram_mb: float
    ok: bool
    reason: str
    basis: str


@dataclass(frozen=True, slots=True)
class GpuBudget:
    index: int
    name: str
    total_mb: float
    free_mb: float  # as read, before this plan
    booked_mb: float  # by this plan, CUDA contexts included

    @property
    def left_mb(self) -> float:
        return self.free_mb - self.booked_mb


@dataclass(frozen=True, slots=True)
class PlacementPlan:
    """Every slot's placement and each GPU's budget; plain data, JSON-able via :meth:`to_dict`."""

    placements: tuple[Placement, ...]
    gpus: tuple[GpuBudget, ...]
    margin_mb: float
    margin_fraction: float
    note: str = ""

    def device_for(self, slot: str) -> str | None:
        return next((p.device for p in self.placements if p.slot == slot), None)

    def gpu_for(self, slot: str) -> int | None:
        """The card a slot was placed on (None: CPU, remote, or not placed)."""
        return next((p.gpu_index for p in self.placements if p.slot == slot), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for gpu, budget in zip(data["gpus"], self.gpus, strict=True):
            gpu["left_mb"] = round(budget.left_mb, 1)
        return data


def parse_device(text: str) -> tuple[str, int | None]:
    """``"cuda:1"`` -> ``("cuda", 1)``; ``"cpu"``/``"auto"``/``"cuda"`` -> ``(text, None)``."""
    kind, _, index = text.strip().lower().partition(":")
    if kind in ("auto", "cpu", "remote") and not index:
        return kind, None
    if kind == "cuda" and (not index or index.isdigit()):
        return "cuda", int(index) if index else None
    raise ValueError(f"unknown device {text!r}: use auto, cpu, cuda or cuda:N")


def visible_gpus(
    readings: list[GpuReading], cuda_visible_devices: str | None
) -> tuple[list[GpuReading], str]:
    """The readings as CUDA numbers them in this process (``CUDA_VISIBLE_DEVICES`` applied).

    NVML numbers GPUs by PCI bus; CUDA does too with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
    """
    if cuda_visible_devices is None:
        return list(readings), ""
    value = cuda_visible_devices.strip()
    items = [v.strip() for v in value.split(",")] if value else []
    if not items or items[0] in ("-1", "NoDevFiles"):
        return [], "CUDA_VISIBLE_DEVICES hides every GPU"
    if not all(i.isdigit() for i in items):
        return list(readings), f"CUDA_VISIBLE_DEVICES={value!r} is not a list of indices: ignored"
    by_index = {r.index: r for r in readings}
    visible = []
    for ordinal, item in enumerate(items):
        if int(item) not in by_index:
            break  # CUDA stops enumerating at the first invalid entry
        visible.append(replace(by_index[int(item)], index=ordinal))
    return visible, f"CUDA_VISIBLE_DEVICES={value!r}"


# --- the planner ---------------------------------------------------------------------------


class _Planner:
    def __init__(self, readings: list[GpuReading], margin_mb: float, fraction: float) -> None:
        self.gpus = {r.index: r for r in readings}
        self.booked = dict.fromkeys(self.gpus, 0.0)
        self.margin_mb, self.fraction = margin_mb, fraction

    def margin(self, index: int) -> float:
        return max(self.margin_mb, self.fraction * self.gpus[index].total_mb)

    def left(self, index: int) -> float:
        return self.gpus[index].free_mb - self.booked[index]

    def cost(self, index: int, need: EngineNeed) -> float:
        return need.vram_mb + (CUDA_CONTEXT_MB if self.booked[index] == 0 else 0.0)

    def fits(self, index: int, need: EngineNeed) -> bool:
        return self.left(index) - self.cost(index, need) >= self.margin(index)

    def book(self, need: EngineNeed, index: int, ok: bool, reason: str) -> Placement:
        self.booked[index] += self.cost(index, need)
        return _placement(need, f"cuda:{index}", index, ok, reason)

    def fixed(self, need: EngineNeed) -> Placement:
        if need.engine in REMOTE_ENGINES:
            return _placement(need, "remote", None, True, "runs on its server")
        try:
            kind, index = parse_device(need.requested)
        except ValueError as exc:
            return _placement(need, need.requested, None, False, str(exc))
        if need.engine not in GPU_ENGINES:
            ok = kind != "cuda"
            why = "a CPU-only engine" + ("" if ok else f": {need.requested} is ignored")
            return _placement(need, "cpu", None, ok, why)
        if kind == "cpu":
            return _placement(need, "cpu", None, True, "set to cpu")
        assert index is not None
        if need.first_gpu_only and index != 0:
            why = f"set to {need.requested}, but this engine can use only the first visible GPU"
            return _placement(need, need.requested, index, False, why + " (see docs/GPU.md)")
        if index not in self.gpus:
            seen = ", ".join(str(i) for i in sorted(self.gpus)) or "none"
            why = f"set to {need.requested}, but no GPU {index} is visible (GPUs: {seen})"
            return _placement(need, need.requested, index, False, why)
        ok = self.fits(index, need)
        return self.book(need, index, ok, f"set to {need.requested}; {self.describe(index, need)}")

    def flexible(self, need: EngineNeed) -> Placement:
        pool = [i for i in sorted(self.gpus) if not need.first_gpu_only or i == 0]
        only = " (this engine can use only the first visible GPU)" if need.first_gpu_only else ""
        if not pool:
            why = "no NVIDIA GPU is visible" + only
            if need.requested == "cuda":
                return _placement(need, "cuda", None, False, f"set to cuda, but {why}")
            return _placement(need, "cpu", None, True, f"{why}: runs on CPU")
        best = max(pool, key=lambda i: (self.left(i), -i))
        if self.fits(best, need):
            return self.book(need, best, True, f"most free memory; {self.describe(best, need)}")
        if need.requested == "cuda":
            why = (
                f"set to cuda: GPU {best} has the most free memory, but {self.describe(best, need)}"
            )
            return self.book(need, best, False, why + only)
        return _placement(
            need, "cpu", None, True, f"{self.describe(best, need)}{only}: runs on CPU"
        )

    def describe(self, index: int, need: EngineNeed) -> str:
        cost, left, margin = self.cost(index, need), self.left(index), self.margin(index)
        name = self.gpus[index].name
        if left - cost >= margin:
            return (
                f"{cost:.0f} MB fits on GPU {index} ({name}): {left:.0f} MB free,"
                f" {left - cost:.0f} MB left (margin {margin:.0f} MB)"
            )
        return (
            f"needs {cost:.0f} MB + {margin:.0f} MB margin and GPU {index} ({name}) has"
            f" {left:.0f} MB free"
        )


def _placement(need: EngineNeed, device: str, index: int | None, ok: bool, why: str) -> Placement:
    return Placement(
        need.slot,
        need.engine,
        need.model,
        need.requested,
        device,
        index,
        need.vram_mb,
        ok,
        why,
        need.basis,
    )


def _is_flexible(need: EngineNeed) -> bool:
    try:
        kind, index = parse_device(need.requested)
    except ValueError:
        return False
    gpu_able = need.engine in GPU_ENGINES and need.engine not in REMOTE_ENGINES
    return gpu_able and kind in ("auto", "cuda") and index is None


def plan_placement(
    needs: list[EngineNeed],
    readings: list[GpuReading],
    *,
    margin_mb: float = DEFAULT_MARGIN_MB,
    margin_fraction: float = DEFAULT_MARGIN_FRACTION,
    note: str = "",
) -> PlacementPlan:
    """Place every need (see the module docstring); the result keeps the order of ``needs``."""
    planner = _Planner(readings, margin_mb, margin_fraction)
    done = {n.slot: planner.fixed(n) for n in needs if not _is_flexible(n)}
    for need in sorted((n for n in needs if _is_flexible(n)), key=lambda n: -n.vram_mb):
        done[need.slot] = planner.flexible(need)
    budgets = tuple(
        GpuBudget(r.index, r.name, r.total_mb, r.free_mb, round(planner.booked[r.index], 1))
        for r in sorted(readings, key=lambda r: r.index)
    )
    placements = tuple(done[n.slot] for n in needs)
    return PlacementPlan(placements, budgets, margin_mb, margin_fraction, note)


# --- estimates ------------------------------------------------------------------------------

# faster-whisper on GPU, max memory incl. CUDA context, beam 5, 13 min of audio, RTX 2080 Ti
# (SYSTRAN/faster-whisper#1030 and its README): (family, bytes per weight) -> MB.
_WHISPER_MEASURED = {
    ("large", 2): 4521.0,
    ("large", 1): 2953.0,
    ("distil-large", 2): 2409.0,
    ("distil-large", 1): 1481.0,
    ("turbo", 2): 2537.0,
    ("turbo", 1): 1545.0,
}
_WHISPER_PARAMS_M = (
    ("distil-large", 756),
    ("turbo", 809),
    ("large", 1550),
    ("medium", 769),
    ("small", 244),
    ("base", 74),
    ("tiny", 39),
)
_WHISPER_WORKSPACE_MB = 900.0  # measured total minus weights for turbo/distil (fp16): 897-919 MB
_KV_BYTES_PER_TOKEN = {"qwen2.5-0.5b": 12_288, "smollm2-135m": 23_040}  # 2*layers*kv_heads*dim*2
_KV_DEFAULT = 131_072  # an 8B-class model with grouped-query attention (32 layers, 8 KV heads)
LLAMA_COMPUTE_MB = 300.0  # llama.cpp's CUDA compute buffer at the default batch (estimate)
TTS_NEEDS: dict[str, tuple[float, str]] = {
    "f5-tts": (
        3000.0,
        "F5-TTS: ~1.6 GB measured by its maintainer without the ASR model"
        " (SWivid/F5-TTS#197); 3 GB budgets long sentences",
    ),
    "cosyvoice2": (
        4000.0,
        "CosyVoice2-0.5B: 2.6 GB of fp32 weights (llm.pt 2.02 GB, flow.pt 451 MB, hift.pt"
        " 83 MB) + speech tokenizer (~0.5 GB, on CUDA with onnxruntime-gpu) + activations",
    ),
    "piper": (400.0, "Piper via onnxruntime CUDA: 63 MB voice + arena/cuDNN workspace (estimate)"),
}


def whisper_need(model: str, compute_type: str) -> tuple[float, str]:
    """Estimated VRAM (MB, without the CUDA context) of a faster-whisper model, and its basis."""
    name = model.lower()
    family, params = next(((f, p) for f, p in _WHISPER_PARAMS_M if f in name), ("?", 1550))
    ctype = compute_type.lower()
    width = 4 if ctype == "float32" else 1 if ctype.startswith("int8") else 2
    measured = _WHISPER_MEASURED.get((family, min(width, 2)))
    if measured is not None and width <= 2:
        return (
            measured - CUDA_CONTEXT_MB,
            f"measured: {family} {compute_type} (faster-whisper#1030)",
        )
    total = params * width * 1.0 + _WHISPER_WORKSPACE_MB - CUDA_CONTEXT_MB
    unknown = " (size unknown: assumed large)" if family == "?" else ""
    return total, f"estimate: {params}M weights x {width} B + workspace{unknown}"


def llama_need(model: str, context_tokens: int, file_mb: float | None) -> tuple[float, str]:
    """Estimated VRAM of a fully offloaded GGUF model: weights + KV cache (f16) + compute."""
    weights = file_mb if file_mb is not None else 4000.0
    kv_bytes = next((v for k, v in _KV_BYTES_PER_TOKEN.items() if k in model.lower()), _KV_DEFAULT)
    kv = context_tokens * kv_bytes / 2**20
    size = f"{weights:.0f} MB file" if file_mb is not None else "4 GB assumed (size unknown)"
    return weights + kv + LLAMA_COMPUTE_MB, f"estimate: {size} + {kv:.0f} MB KV + compute buffer"


def model_file_mb(model: str) -> float | None:
    """Size of a catalog model or a local file/folder, in MB; None when unknown."""
    from avatar.models.catalog import CATALOG  # standard library only, like this module

    if model in CATALOG:
        return CATALOG[model].size / 2**20
    path = Path(model).expanduser()
    if path.is_file():
        return path.stat().st_size / 2**20
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
    return None


def _stt_need(cfg: SttSettings) -> EngineNeed:
    vram, basis = 0.0, ""
    if cfg.engine == "faster-whisper":
        vram, basis = whisper_need(cfg.model, cfg.compute_type)
    return EngineNeed("stt", cfg.engine, cfg.model, vram, cfg.device, basis)


def _llm_need(cfg: LlmSettings) -> EngineNeed:
    requested = getattr(cfg, "device", None) or ("cuda" if cfg.gpu_layers else "cpu")
    vram, basis = 0.0, ""
    if cfg.engine == "llama-cpp":
        vram, basis = llama_need(cfg.model, cfg.context_tokens, model_file_mb(cfg.model))
    return EngineNeed("llm", cfg.engine, cfg.model, vram, requested, basis)


def _tts_need(slot: str, cfg: TtsSlotSettings) -> EngineNeed:
    vram, basis = TTS_NEEDS.get(cfg.engine, (0.0, ""))
    first = cfg.engine in FIRST_GPU_ONLY
    return EngineNeed(slot, cfg.engine, cfg.model, vram, cfg.device, basis, first)


def needs_from_settings(settings: Settings) -> list[EngineNeed]:
    """The GPU-relevant slots of ``settings`` (stt, llm, tts.fast, tts.hq) with their estimates."""
    needs = [_stt_need(settings.stt), _llm_need(settings.llm)]
    needs.append(_tts_need("tts.fast", settings.tts.fast))
    if settings.tts.hq is not None:
        needs.append(_tts_need("tts.hq", settings.tts.hq))
    return needs


def apply_placement(settings: Settings, plan: PlacementPlan) -> Settings:
    """A copy of ``settings`` whose device fields hold the plan's devices (``auto`` resolved)."""

    def device(slot: str, current: str) -> str:
        chosen = plan.device_for(slot)
        return current if chosen in (None, "remote") else str(chosen)

    tts = settings.tts
    updates: dict[str, Any] = {
        "stt": settings.stt.model_copy(update={"device": device("stt", settings.stt.device)}),
    }
    tts_update: dict[str, Any] = {
        "fast": tts.fast.model_copy(update={"device": device("tts.fast", tts.fast.device)})
    }
    if tts.hq is not None:
        tts_update["hq"] = tts.hq.model_copy(update={"device": device("tts.hq", tts.hq.device)})
    updates["tts"] = tts.model_copy(update=tts_update)
    llm = plan.device_for("llm")
    if llm == "cpu":
        updates["llm"] = settings.llm.model_copy(update={"gpu_layers": 0})
    elif llm and llm.startswith("cuda"):
        change: dict[str, Any] = {"gpu_layers": settings.llm.gpu_layers or -1}
        if hasattr(settings.llm, "device"):
            change["device"] = llm
        updates["llm"] = settings.llm.model_copy(update=change)
    return settings.model_copy(update=updates)


def plan_for_settings(
    settings: Settings,
    readings: list[GpuReading] | None = None,
    environ: Mapping[str, str] | None = None,
) -> PlacementPlan:
    """The plan for ``settings`` on this machine (NVML now, ``CUDA_VISIBLE_DEVICES`` applied).

    Margins come from ``settings.gpu`` when the settings have that section.
    """
    found = gpu_readings() if readings is None else readings
    env = os.environ if environ is None else environ
    visible, note = visible_gpus(found, env.get("CUDA_VISIBLE_DEVICES"))
    gpu = getattr(settings, "gpu", None)
    return plan_placement(
        needs_from_settings(settings),
        visible,
        margin_mb=float(getattr(gpu, "margin_mb", DEFAULT_MARGIN_MB)),
        margin_fraction=float(getattr(gpu, "margin_fraction", DEFAULT_MARGIN_FRACTION)),
        note=note,
    )
