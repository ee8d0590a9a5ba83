#!/usr/bin/env python3
"""GPU check for AVATAR: GPU readings, placement on them, a stand-in engine workload, OOM handling.

Meant for a rented CUDA machine with Python 3.12 and torch, no internet and no model weights:

    python3 scripts/gpu_check.py [--device auto|cuda|cpu] [--audio speech.wav] [--record DIR]

It prints one JSON report:
- ``readings``: free/total memory per GPU from NVML (pynvml), else ``nvidia-smi``, else torch;
- ``placement``: avatar's placement (src/avatar/system/placement.py) of a GPU configuration
  (Whisper large-v3, Qwen2.5-0.5B, F5-TTS, CosyVoice2) on those readings, and admission of voice
  sessions onto the cards;
- ``workload``: a real CUDA workload standing in for the engines (randomly initialised torch
  models shaped like an ASR encoder and a TTS acoustic model + vocoder, run on log-mel features
  of real speech when ``--audio`` is given), timed on GPU and CPU;
- ``oom``: a deliberately provoked CUDA out-of-memory caught by avatar.system.cuda.oom_guard,
  with memory before, at the peak and after, and a forward pass afterwards;
- ``cuda_context_mb``: GPU memory the CUDA context took in this process (NVML, before/after).
``--record DIR`` also writes the raw readings (idle, nearly full) as JSON for tests/data/nvml.
Without torch it still reports readings and placement, and says why the workload was skipped.
Only the standard library and avatar's pure modules are imported from avatar (src/ on sys.path).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import wave
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from avatar.system import admission as adm  # noqa: E402
from avatar.system.cuda import EngineOverloaded, free_cuda_memory, is_cuda_oom, oom_guard  # noqa: E402
from avatar.system.gpus import GpuReading, gpu_readings  # noqa: E402
from avatar.system.placement import (  # noqa: E402
    TTS_NEEDS,
    EngineNeed,
    llama_need,
    model_file_mb,
    plan_placement,
    visible_gpus,
    whisper_need,
)

MB = 2**20


# --- readings --------------------------------------------------------------------------------


SMI_QUERY = "index,name,memory.total,memory.free,memory.used,utilization.gpu"


def parse_smi_csv(text: str) -> list[GpuReading]:
    """``nvidia-smi --query-gpu=SMI_QUERY --format=csv,noheader,nounits`` output as readings."""
    readings = []
    for line in text.strip().splitlines():
        idx, name, total, free, used, util = (p.strip() for p in line.split(","))
        utilization = float(util) if util.replace(".", "").isdigit() else None
        readings.append(
            GpuReading(int(idx), name, float(total), float(free), float(used), utilization)
        )
    return readings


def smi_readings() -> list[GpuReading]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    command = [exe, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    return parse_smi_csv(out.stdout) if out.returncode == 0 else []


def torch_readings(torch: Any) -> list[GpuReading]:
    readings = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        name = torch.cuda.get_device_name(i)
        readings.append(GpuReading(i, name, total / MB, free / MB, (total - free) / MB, None))
    return readings


def read_gpus(torch: Any | None, source: str = "auto") -> tuple[list[GpuReading], str]:
    """NVML first, then nvidia-smi (both without a CUDA context here), then torch."""
    if source in ("auto", "nvml") and (found := gpu_readings()):
        return found, "nvml (pynvml)"
    if source in ("auto", "smi") and (found := smi_readings()):
        return found, "nvidia-smi"
    if source in ("auto", "torch") and torch is not None and torch.cuda.is_available():
        return torch_readings(torch), "torch.cuda.mem_get_info"
    return [], f"none found (source {source}): no pynvml, no nvidia-smi, no CUDA torch"


# --- placement and admission ------------------------------------------------------------------


def gpu_config_needs() -> list[EngineNeed]:
    stt, stt_basis = whisper_need("large-v3", "float16")
    qwen = "qwen2.5-0.5b-instruct"
    llm, llm_basis = llama_need(qwen, 4096, model_file_mb(qwen))
    (f5, f5_basis), (cv, cv_basis) = TTS_NEEDS["f5-tts"], TTS_NEEDS["cosyvoice2"]
    return [
        EngineNeed("stt", "faster-whisper", "large-v3", stt, "auto", stt_basis),
        EngineNeed("llm", "llama-cpp", qwen, llm, "auto", llm_basis),
        EngineNeed("tts.fast", "f5-tts", "F5TTS_v1_Base", f5, "auto", f5_basis),
        EngineNeed("tts.hq", "cosyvoice2", "CosyVoice2-0.5B", cv, "auto", cv_basis, True),
    ]


def placement_report(readings: list[GpuReading]) -> dict[str, Any]:
    visible, note = visible_gpus(readings, os.environ.get("CUDA_VISIBLE_DEVICES"))
    plan = plan_placement(gpu_config_needs(), visible, note=note)
    seats, admission = [], adm.GpuAdmission(visible, sessions_per_gpu=4)
    for n in range(4 * max(1, len(visible)) + 1):
        try:
            seat = admission.admit(f"session-{n}")
            ok, why = admission.hq_allowed(hq_gpu=plan_gpu(plan.to_dict(), "tts.hq"))
            seats.append({**asdict(seat), "hq_allowed": ok, "hq_reason": why})
        except adm.GpuBusy as exc:
            seats.append({"session_id": f"session-{n}", "refused": exc.code, "why": exc.message})
    return {"plan": plan.to_dict(), "admission": seats, "status": admission.status()}


def plan_gpu(plan: dict[str, Any], slot: str) -> int | None:
    return next((p["gpu_index"] for p in plan["placements"] if p["slot"] == slot), None)


# --- the stand-in workload ---------------------------------------------------------------------


def load_audio(path: str | None) -> tuple[list[float], int, str]:
    """16-bit PCM WAV through the standard library, or a synthetic voiced signal (10 s)."""
    if path:
        with wave.open(path, "rb") as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            raw = wav.readframes(wav.getnframes())
        if width != 2:
            raise SystemExit(f"{path}: only 16-bit PCM WAV is read here")
        ints = memoryview(raw).cast("h")
        mono = [
            sum(ints[i : i + channels]) / channels / 32768 for i in range(0, len(ints), channels)
        ]
        return mono, rate, f"{Path(path).name} ({len(mono) / rate:.2f} s at {rate} Hz)"
    import math

    rate = 16_000
    out = []
    for i in range(rate * 10):
        t = i / rate
        envelope = max(0.0, math.sin(2 * math.pi * 3 * t))  # ~6 syllables a second
        pitch = 120 + 20 * math.sin(2 * math.pi * 0.5 * t)
        out.append(
            0.3 * envelope * sum(math.sin(2 * math.pi * k * pitch * t) / k for k in (1, 2, 3))
        )
    return out, rate, "synthetic voiced signal (10 s at 16 kHz): pass --audio for real speech"


def build_models(torch: Any) -> tuple[Any, Any]:
    nn = torch.nn
    module: Any = nn.Module

    class Asr(module):  # conformer-sized encoder stand-in: 2x conv subsampling + transformer
        def __init__(self) -> None:
            super().__init__()
            self.sub = nn.Sequential(
                nn.Conv1d(80, 512, 3, stride=2, padding=1),
                nn.GELU(),
                nn.Conv1d(512, 512, 3, stride=2, padding=1),
                nn.GELU(),
            )
            layer = nn.TransformerEncoderLayer(512, 8, 2048, batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, 12, enable_nested_tensor=False)
            self.head = nn.Linear(512, 5000)

        def forward(self, mel: Any) -> Any:
            x = self.sub(mel).transpose(1, 2)
            return self.head(self.encoder(x)).argmax(-1)

    class Tts(module):  # text encoder -> frames -> mel -> 256x upsampling vocoder
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(256, 384)
            layer = nn.TransformerEncoderLayer(384, 6, 1536, batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, 6, enable_nested_tensor=False)
            self.to_mel = nn.Conv1d(384, 80, 5, padding=2)
            blocks: list[Any] = [nn.Conv1d(80, 256, 7, padding=3)]
            channels = 256
            for _ in range(4):  # 4 x 4x upsampling = 256 samples per frame
                blocks += [nn.LeakyReLU(0.1), nn.ConvTranspose1d(channels, channels // 2, 8, 4, 2)]
                blocks += [nn.Conv1d(channels // 2, channels // 2, 3, padding=1)]
                channels //= 2
            blocks += [nn.LeakyReLU(0.1), nn.Conv1d(channels, 1, 7, padding=3), nn.Tanh()]
            self.vocoder = nn.Sequential(*blocks)

        def forward(self, tokens: Any, frames: int) -> Any:
            hidden = self.encoder(self.embed(tokens))
            repeat = -(-frames // tokens.shape[1])
            hidden = hidden.repeat_interleave(repeat, dim=1)[:, :frames]
            return self.vocoder(self.to_mel(hidden.transpose(1, 2))).squeeze(1)

    return Asr().eval(), Tts().eval()


def log_mel(torch: Any, samples: Any, rate: int) -> Any:
    n_fft, hop, mels = 400 * rate // 16_000, 160 * rate // 16_000, 80
    spec = (
        torch.stft(
            samples,
            n_fft,
            hop,
            window=torch.hann_window(n_fft, device=samples.device),
            return_complex=True,
        ).abs()
        ** 2
    )
    freqs = torch.linspace(0, rate / 2, spec.shape[0], device=samples.device)
    mel_of = lambda f: 2595 * torch.log10(1 + f / 700)  # noqa: E731
    edges = 700 * (
        10
        ** (
            torch.linspace(
                0, float(mel_of(torch.tensor(rate / 2))), mels + 2, device=samples.device
            )
            / 2595
        )
        - 1
    )
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bank = torch.clamp(
        torch.minimum((freqs - lower) / (centre - lower), (upper - freqs) / (upper - centre)), min=0
    )
    return torch.log(bank @ spec + 1e-6).unsqueeze(0)


def timed(torch: Any, device: str, fn: Any, runs: int) -> float:
    fn()  # warm-up (kernels, cuDNN choices)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / runs


def time_target(
    torch: Any, target: str, asr: Any, tts: Any, mel: Any, toks: Any, frames: int
) -> dict[str, Any]:
    """Mean time of one ASR and one TTS forward pass on ``target`` (fp32; fp16 too on CUDA)."""
    runs = 10 if target == "cuda" else 2
    seconds = mel.shape[-1] / 100
    if target == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        asr_s = timed(torch, target, lambda: asr(mel), runs)
        tts_s = timed(torch, target, lambda: tts(toks, frames), runs)
        out: dict[str, Any] = {
            "asr_ms": round(asr_s * 1e3, 2),
            "tts_ms": round(tts_s * 1e3, 2),
            "asr_rtf": round(asr_s / seconds, 5),
            "tts_rtf": round(tts_s / seconds, 5),
        }
        if target == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                out["asr_fp16_ms"] = round(timed(torch, target, lambda: asr(mel), runs) * 1e3, 2)
                fp16_tts = timed(torch, target, lambda: tts(toks, frames), runs)
                out["tts_fp16_ms"] = round(fp16_tts * 1e3, 2)
            out["peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / MB, 1)
            out["wave_samples"] = int(tts(toks, frames).shape[-1])
    return out


def run_workload(torch: Any, device: str, audio: list[float], rate: int) -> dict[str, Any]:
    torch.manual_seed(0)
    asr, tts = build_models(torch)
    seconds = len(audio) / rate
    samples = torch.tensor(audio, dtype=torch.float32)
    frames = int(seconds * 22_050 / 256)
    tokens = torch.randint(0, 256, (1, max(8, int(seconds * 14))))  # ~14 characters a second
    results: dict[str, Any] = {
        "audio_s": round(seconds, 2),
        "asr_params_m": round(sum(p.numel() for p in asr.parameters()) / 1e6, 1),
        "tts_params_m": round(sum(p.numel() for p in tts.parameters()) / 1e6, 1),
    }
    targets = ["cpu"]
    if device in ("auto", "cuda") and torch.cuda.is_available():
        targets.append("cuda")
    for target in targets:
        mel = log_mel(torch, samples.to(target), rate)
        results[target] = time_target(
            torch, target, asr.to(target), tts.to(target), mel, tokens.to(target), frames
        )
    if "cuda" in results:
        cpu, gpu = results["cpu"], results["cuda"]
        results["speedup_asr"] = round(cpu["asr_ms"] / gpu["asr_ms"], 1)
        results["speedup_tts"] = round(cpu["tts_ms"] / gpu["tts_ms"], 1)
    asr.to("cpu")
    return results


# --- OOM ---------------------------------------------------------------------------------------


def memory_snapshot(torch: Any) -> dict[str, float]:
    free, total = torch.cuda.mem_get_info()
    return {
        "allocated_mb": round(torch.cuda.memory_allocated() / MB, 1),
        "reserved_mb": round(torch.cuda.memory_reserved() / MB, 1),
        "free_mb": round(free / MB, 1),
        "total_mb": round(total / MB, 1),
    }


def provoke_oom(torch: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Allocate 2 GiB blocks until CUDA refuses, inside oom_guard, and show the memory come back."""
    asr, _ = build_models(torch)
    asr = asr.to("cuda")  # an engine that stays loaded through the failure
    mel = torch.randn(1, 80, 1000, device="cuda")
    before = memory_snapshot(torch)
    peak: dict[str, Any] = {}

    def greedy_request() -> None:
        blocks = []
        while True:
            blocks.append(torch.empty(2 * 2**30, dtype=torch.uint8, device="cuda"))
            if not peak and torch.cuda.mem_get_info()[0] < 6 * 2**30:
                peak.update(memory_snapshot(torch))
                record["full"] = [asdict(r) for r in smi_readings() or torch_readings(torch)]

    caught: EngineOverloaded | None = None
    try:
        with oom_guard("stand-in engine", retry_after_s=3):
            greedy_request()
    except EngineOverloaded as exc:
        caught = exc
    after = memory_snapshot(torch)
    with torch.inference_mode():
        survived = tuple(asr(mel).shape)
    report: dict[str, Any] = {"before": before, "peak": peak, "after": after}
    if caught is None:
        report["error"] = "no out-of-memory happened"
        return report
    cause = caught.__cause__
    report.update(
        raised=type(caught).__name__,
        code=caught.code,
        http_status=caught.http_status,
        headers=caught.headers,
        message=caught.message,
        cause=f"{type(cause).__module__}.{type(cause).__name__}",
        is_cuda_oom=bool(cause is not None and is_cuda_oom(cause)),
        memory_back=after["allocated_mb"] <= before["allocated_mb"] + 1,
        forward_after_oom=list(survived),
    )
    del asr, mel
    report["free_cuda_memory_at_end"] = asdict(free_cuda_memory())
    return report


# --- main --------------------------------------------------------------------------------------


def import_torch() -> tuple[Any | None, str]:
    try:
        import torch
    except ImportError as exc:
        return None, f"torch is not installed ({exc.name}): the workload needs torch (with CUDA)"
    return torch, f"torch {torch.__version__}, CUDA {torch.version.cuda}"


def context_overhead(torch: Any, idle: list[GpuReading]) -> float | None:
    """NVML/nvidia-smi 'used' after creating this process's CUDA context, minus before and live."""
    if not idle:
        return None
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    now = gpu_readings() or smi_readings()
    if not now:
        return None
    allocated = torch.cuda.memory_reserved() / MB
    return round(now[0].used_mb - idle[0].used_mb - allocated, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--audio", help="16-bit PCM WAV of speech for the workload's input")
    parser.add_argument("--record", help="folder to write the raw GPU readings to (JSON)")
    parser.add_argument("--skip-oom", action="store_true", help="do not provoke an OOM")
    parser.add_argument(
        "--source",
        choices=("auto", "nvml", "smi", "torch"),
        default="auto",
        help="where to read GPU memory from (auto: NVML, else nvidia-smi, else torch)",
    )
    args = parser.parse_args()

    torch, torch_note = import_torch()
    report: dict[str, Any] = {"python": platform.python_version(), "torch": torch_note}
    readings, source = read_gpus(torch if args.device != "cpu" else None, args.source)
    report["readings"] = {"source": source, "gpus": [asdict(r) for r in readings]}
    record: dict[str, Any] = {"idle": report["readings"]["gpus"]}
    report["placement"] = placement_report(readings)
    cuda = torch is not None and args.device != "cpu" and torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        report["error"] = "--device cuda, but " + (torch_note if torch is None else "no CUDA GPU")
    if cuda:
        report["cuda_context_mb"] = context_overhead(torch, readings)
    audio, rate, audio_note = load_audio(args.audio)
    if torch is None:
        report["workload"] = {"skipped": torch_note}
    else:
        report["workload"] = {"input": audio_note, **run_workload(torch, args.device, audio, rate)}
    if cuda and not args.skip_oom:
        report["oom"] = provoke_oom(torch, record)
    elif not args.skip_oom:
        report["oom"] = {"skipped": "needs a CUDA GPU"}
    if args.record:
        folder = Path(args.record)
        folder.mkdir(parents=True, exist_ok=True)
        for name, gpus in record.items():
            data = {"source": source, "device": platform.node(), "gpus": gpus}
            (folder / f"{name}.json").write_text(json.dumps(data, indent=1))
    print(json.dumps(report, indent=1))
    return 1 if "error" in report else 0


if __name__ == "__main__":
    raise SystemExit(main())
