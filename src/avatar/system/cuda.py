"""CUDA out-of-memory: recognise it in any engine's exception, free cached memory, answer 503.

Every GPU library reports an exhausted card its own way: PyTorch raises
``torch.OutOfMemoryError`` ("CUDA out of memory. Tried to allocate ..."), CTranslate2 a
``RuntimeError`` ("CUDA failed with error out of memory"), llama.cpp logs "cudaMalloc failed: out of
memory" and fails the call, onnxruntime reports "CUDA failure 2: out of memory". Engines wrap those
in their own errors (``raise EngineFailed(...) from exc``), so :func:`is_cuda_oom` walks the whole
cause/context chain. :func:`oom_guard` turns such a failure into :class:`EngineOverloaded` (HTTP 503
with ``Retry-After``) after :func:`free_cuda_memory` has handed the caching allocator's unused
blocks back to the driver, so the retry finds the memory the failed request reserved.

Standard library only: scripts import this module on machines without avatar's dependencies, and
torch is used only when something else already imported it (a process that never imported torch
holds no torch-cached GPU memory; importing it just to empty that cache would cost seconds).
"""

from __future__ import annotations

import gc
import math
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from avatar.errors import AvatarError

# "CUDA out of memory" (torch), "CUDA error: out of memory" (torch, CUDA runtime),
# "CUDA failed with error out of memory" (CTranslate2), "cudaMalloc failed: out of memory"
# (llama.cpp), "CUDA failure 2: out of memory" (onnxruntime), plus the driver/cuBLAS codes.
_OOM_MESSAGE = re.compile(
    r"cuda[^\n]{0,80}out of memory|CUDA_ERROR_OUT_OF_MEMORY|cudaErrorMemoryAllocation"
    r"|CUBLAS_STATUS_ALLOC_FAILED",
    re.IGNORECASE,
)
_MAX_CHAIN = 16
DEFAULT_RETRY_AFTER_S = 5.0


class EngineOverloaded(AvatarError):
    """A GPU engine ran out of memory; the request may succeed when load drops (HTTP 503).

    ``headers`` carries ``Retry-After``: the API's error handler sends it with the problem+json.
    """

    code = "gpu_out_of_memory"
    http_status = 503

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        code: str | None = None,
        retry_after_s: float = DEFAULT_RETRY_AFTER_S,
    ) -> None:
        super().__init__(
            message,
            hint=hint
            or "retry shortly; if it persists, lower the sessions per GPU, use the fast"
            " TTS mode, or move an engine to another GPU (see docs/GPU.md)",
            code=code,
        )
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


def _is_torch_oom_class(exc: BaseException) -> bool:
    return any(
        cls.__name__ == "OutOfMemoryError" and cls.__module__.split(".")[0] == "torch"
        for cls in type(exc).__mro__
    )


def is_cuda_oom(exc: BaseException) -> bool:
    """Whether ``exc`` (or anything in its cause/context chain) is a CUDA out-of-memory failure.

    A plain ``MemoryError`` or a CPU allocator failure is not: only the GPU ran out.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(current))
        if _is_torch_oom_class(current) or _OOM_MESSAGE.search(str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


@dataclass(frozen=True, slots=True)
class FreedMemory:
    """What :func:`free_cuda_memory` did: torch's reserved memory before and after, in MB."""

    ran: bool
    reserved_before_mb: float
    reserved_after_mb: float
    note: str

    @property
    def released_mb(self) -> float:
        return max(0.0, self.reserved_before_mb - self.reserved_after_mb)


def _reserved_mb(torch: object) -> float:
    cuda = torch.cuda  # type: ignore[attr-defined]
    return sum(float(cuda.memory_reserved(i)) for i in range(cuda.device_count())) / 2**20


def free_cuda_memory() -> FreedMemory:
    """Collect garbage and return torch's cached, unused GPU blocks to the driver (all devices).

    A no-op (``ran`` False) when torch was never imported or never initialised CUDA.
    """
    gc.collect()
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is None:
        return FreedMemory(False, 0.0, 0.0, "torch is not loaded: no cached GPU memory to free")
    try:
        if not (cuda.is_available() and cuda.is_initialized()):
            return FreedMemory(False, 0.0, 0.0, "torch has not initialised CUDA")
        before = _reserved_mb(torch)
        cuda.empty_cache()
        return FreedMemory(True, round(before, 1), round(_reserved_mb(torch), 1), "emptied")
    except RuntimeError as exc:  # a broken context (e.g. after an illegal access) cannot be freed
        return FreedMemory(False, 0.0, 0.0, f"could not empty the CUDA cache: {exc}")


def cuda_available() -> bool:
    """Whether an already-imported torch sees a CUDA device (False when torch is not loaded)."""
    cuda = getattr(sys.modules.get("torch"), "cuda", None)
    try:
        return bool(cuda is not None and cuda.is_available())
    except RuntimeError:
        return False


def resolve_auto_device(device: str) -> str:
    """``"auto"`` -> ``"cuda:0"`` when torch sees a GPU, else ``"cpu"``; others unchanged.

    Call after the engine's library imported torch. Placement normally resolves ``auto`` first
    (:func:`avatar.system.placement.apply_placement`); this is the fallback without a plan.
    """
    if device.strip().lower() != "auto":
        return device
    return "cuda:0" if cuda_available() else "cpu"


@contextmanager
def oom_guard(what: str, *, retry_after_s: float = DEFAULT_RETRY_AFTER_S) -> Iterator[None]:
    """Turn a CUDA out-of-memory failure inside the block into :class:`EngineOverloaded`.

    The failed call's frames are cleared and cached memory freed before the error is raised, so
    a retry finds the memory; every other exception passes through unchanged.
    """
    try:
        yield
    except EngineOverloaded:
        raise
    except Exception as exc:
        if not is_cuda_oom(exc):
            raise
        # The traceback's finished frames still hold the failed request's tensors in their
        # locals; clear them, or empty_cache() could not hand that memory back.
        traceback.clear_frames(exc.__traceback__)
        freed = free_cuda_memory()
        detail = f" (released {freed.released_mb:.0f} MB of cached memory)" if freed.ran else ""
        raise EngineOverloaded(
            f"{what} ran out of GPU memory{detail}", retry_after_s=retry_after_s
        ) from exc
