"""GPU readings through NVML (nvidia-ml-py); an empty list where there is no NVIDIA driver."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GpuReading:
    index: int
    name: str
    total_mb: float
    free_mb: float
    used_mb: float
    utilization_pct: float | None


def gpu_readings() -> list[GpuReading]:
    """Free and total memory of every NVIDIA GPU; [] when NVML is missing or finds none."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        readings = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                util: float | None = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except pynvml.NVMLError:
                util = None
            name = pynvml.nvmlDeviceGetName(handle)
            readings.append(
                GpuReading(
                    index=i,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    total_mb=mem.total / 2**20,
                    free_mb=mem.free / 2**20,
                    used_mb=mem.used / 2**20,
                    utilization_pct=util,
                )
            )
        return readings
    finally:
        pynvml.nvmlShutdown()
