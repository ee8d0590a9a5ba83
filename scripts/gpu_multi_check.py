#!/usr/bin/env python3
"""Multi-GPU check for AVATAR: placement and admission on every card of a real machine.

Meant for a rented machine with two (or more) NVIDIA GPUs, Python, torch, and AVATAR's core
dependencies (no model weights, no internet):

    python3 scripts/gpu_multi_check.py --out report.json

It runs four steps and prints one JSON report (also written to ``--out``):

1. ``spread``: NVML readings of every card, AVATAR's placement of the GPU configuration of
   docs/GPU.md (Whisper large-v3, Qwen2.5-0.5B, F5-TTS, CosyVoice2) on them, then each engine's
   stand-in loaded on the card the plan chose (a tensor of the engine's booked VRAM and a small
   torch model run on it, as in scripts/gpu_check.py) and the cards read again: how much each
   card's used memory grew against what placement booked for it.
2. ``server``: the real AVATAR server (``avatar serve``, in a process of its own; remote engines
   on the fake OpenAI backend shipped in ``avatar.testing``, since the machine has no weights)
   with ``GET /api/system/info`` (per-card readings, admission) and voice sessions opened over
   ``/ws/chat``: the card each was seated on (``session_started.gpu``).
3. ``fallback``: card 0 filled by this process to under AVATAR's admission floor; placement on
   the new readings (every engine on the other card) and new sessions (seated on the other card),
   then ``/api/system/info`` showing it.
4. ``both_full``: card 1 filled too: the next session is refused (``gpu_busy``, close 1013).
5. ``recovered``: both cards released; the next session goes back to card 0, the emptier one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_check import build_models, gpu_config_needs  # noqa: E402

from avatar.system.admission import DEFAULT_MIN_FREE_MB  # noqa: E402
from avatar.system.gpus import GpuReading, gpu_readings  # noqa: E402
from avatar.system.placement import CUDA_CONTEXT_MB, PlacementPlan, plan_placement  # noqa: E402
from avatar.testing.fake_openai import spawned_fake_openai  # noqa: E402
from avatar.testing.processes import closed_port, stop, wait_until_answering  # noqa: E402

MB = 2**20
STAND_INS = {  # the torch models of scripts/gpu_check.py run in each engine's place
    "stt": "asr encoder (41 M parameters)",
    "llm": "transformer + upsampler (the tts stand-in, 11.5 M parameters)",
    "tts.fast": "tts acoustic model + vocoder (11.5 M parameters)",
    "tts.hq": "tts acoustic model + vocoder (11.5 M parameters)",
}
TOKEN = "multi-gpu-check-token-0123456789"


def cards(readings: list[GpuReading]) -> list[dict[str, Any]]:
    return [
        {"index": r.index, "name": r.name, "free_mb": round(r.free_mb), "used_mb": round(r.used_mb)}
        for r in readings
    ]


def plan_summary(plan: PlacementPlan) -> list[dict[str, Any]]:
    return [
        {
            "slot": p.slot,
            "engine": p.engine,
            "device": p.device,
            "booked_mb": p.vram_mb,
            "reason": p.reason,
        }
        for p in plan.placements
    ]


# --- 1. engines spread over the cards -------------------------------------------------------


def load_stand_ins(torch: Any, plan: PlacementPlan) -> tuple[list[Any], dict[str, Any]]:
    """Each engine's stand-in on its planned card: booked memory held, a model run there."""
    held: list[Any] = []
    runs: dict[str, Any] = {}
    for p in plan.placements:
        if not p.device.startswith("cuda"):
            continue
        device = torch.device(p.device)
        torch.cuda.set_device(device)  # the context, where this is the card's first engine
        asr, tts = build_models(torch)  # fresh instances: one per engine
        model = (asr if p.slot == "stt" else tts).to(device).eval()
        held.append(model)
        weights = max(0.0, p.vram_mb - model_mb(model))  # the engine's own memory
        held.append(torch.empty(int(weights * MB), dtype=torch.uint8, device=device))
        with torch.inference_mode():
            start = time.perf_counter()
            if p.slot == "stt":
                out = model(torch.randn(1, 80, 1000, device=device))
            else:
                out = model(torch.randint(0, 256, (1, 120), device=device), 430)  # 5 s
            torch.cuda.synchronize(device)
        runs[p.slot] = {
            "device": p.device,
            "stand_in": STAND_INS[p.slot],
            "first_run_ms": round((time.perf_counter() - start) * 1000, 1),
            "output_shape": list(out.shape),
        }
    torch.cuda.synchronize()
    return held, runs


def model_mb(model: Any) -> float:
    return sum(t.numel() * t.element_size() for t in model.parameters()) / MB


def spread_step(torch: Any) -> dict[str, Any]:
    before = gpu_readings()
    plan = plan_placement(gpu_config_needs(), before)
    held, runs = load_stand_ins(torch, plan)
    after = gpu_readings()
    booked: dict[int, float] = {}
    for p in plan.placements:
        if p.gpu_index is not None:
            # the first engine on a card also books the CUDA context
            booked[p.gpu_index] = booked.get(p.gpu_index, CUDA_CONTEXT_MB) + p.vram_mb
    growth = [
        {
            "index": b.index,
            "engines": [p.slot for p in plan.placements if p.gpu_index == b.index],
            "booked_mb": round(booked.get(b.index, 0.0)),
            "used_growth_mb": round(a.used_mb - b.used_mb),
        }
        for b, a in zip(before, after, strict=True)
    ]
    del held
    torch.cuda.empty_cache()
    return {
        "readings": cards(before),
        "plan": plan_summary(plan),
        "runs": runs,
        "after_loading": cards(after),
        "per_card": growth,
    }


# --- 2-4. the real server ---------------------------------------------------------------------


def start_server(base_url: str, data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = closed_port()
    env = dict(os.environ)
    env.update(
        {
            "AVATAR_DATA_DIR": data_dir,
            "AVATAR_API_TOKEN": TOKEN,
            "AVATAR_SERVER__PRELOAD": "false",
            "AVATAR_STT__ENGINE": "openai",
            "AVATAR_STT__BASE_URL": base_url,
            "AVATAR_LLM__ENGINE": "openai",
            "AVATAR_LLM__BASE_URL": base_url,
            "AVATAR_LLM__MODEL": "fake-model",
            "AVATAR_TTS__FAST__ENGINE": "openai",
            "AVATAR_TTS__FAST__BASE_URL": base_url,
            "AVATAR_GPU__SESSIONS_PER_GPU": "4",
            "AVATAR_MAX_SESSIONS_PER_CLIENT": "16",  # all sessions here come from one client
        }
    )
    code = "from avatar.cli.main import app; app()"
    command = [sys.executable, "-c", code, "serve", "--no-preload", "--port", str(port)]
    return subprocess.Popen(command, env=env), f"http://127.0.0.1:{port}"


def system_info(url: str) -> dict[str, Any]:
    import httpx

    response = httpx.get(
        f"{url}/api/system/info", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    response.raise_for_status()
    data = response.json()
    return {"gpus": data.get("gpus"), "admission": data.get("admission")}


class Sessions:
    """Voice sessions held open over /ws/chat, as a client would."""

    def __init__(self, url: str) -> None:
        self.ws_url = url.replace("http://", "ws://") + "/ws/chat"
        self.open: dict[str, Any] = {}

    async def start(self, name: str) -> dict[str, Any]:
        import websockets

        ws = await websockets.connect(
            f"{self.ws_url}?session_id={name}",
            additional_headers={"Authorization": f"Bearer {TOKEN}"},
        )
        try:
            first = json.loads(await ws.recv())
        except websockets.ConnectionClosed as closed:
            return {"session": name, "refused": {"close_code": closed.code, "why": closed.reason}}
        if first.get("type") != "session_started":
            await ws.close()
            return {"session": name, "refused": first}
        self.open[name] = ws
        return {"session": name, "gpu": first.get("gpu")}

    async def close_all(self) -> None:
        for ws in self.open.values():
            await ws.close()
        self.open.clear()


def fill_card(torch: Any, index: int, leave_mb: float) -> tuple[list[Any], float]:
    """Allocate on card ``index`` until about ``leave_mb`` is free (NVML's count)."""
    held: list[Any] = []
    device = torch.device(f"cuda:{index}")
    while True:
        free = next(r.free_mb for r in gpu_readings() if r.index == index)
        want = free - leave_mb
        if want < 64:
            return held, free
        held.append(torch.empty(int(min(want, 16384) * MB), dtype=torch.uint8, device=device))
        torch.cuda.synchronize(device)


async def server_steps(torch: Any, url: str) -> dict[str, Any]:
    sessions = Sessions(url)
    report: dict[str, Any] = {"info_idle": system_info(url)}
    try:
        report["sessions"] = [
            await sessions.start("multi-gpu-a"),
            await sessions.start("multi-gpu-b"),
        ]
        report["info_two_sessions"] = system_info(url)

        held, free = fill_card(torch, 0, leave_mb=DEFAULT_MIN_FREE_MB / 2)
        await asyncio.sleep(2.5)  # admission re-reads NVML once its readings are 2 s old
        full = gpu_readings()
        fallback_plan = plan_placement(gpu_config_needs(), full)
        report["fallback"] = {
            "card0_free_mb_after_fill": round(free),
            "readings": cards(full),
            "plan": plan_summary(fallback_plan),
            "sessions": [await sessions.start(f"multi-gpu-{c}") for c in "cd"],
            "info": system_info(url),
        }
        held_too, _ = fill_card(torch, 1, leave_mb=DEFAULT_MIN_FREE_MB / 2)
        await asyncio.sleep(2.5)
        report["both_full"] = {
            "readings": cards(gpu_readings()),
            "sessions": [await sessions.start("multi-gpu-e")],
        }
        del held, held_too
        torch.cuda.empty_cache()
        await asyncio.sleep(2.5)
        report["recovered"] = {
            "readings": cards(gpu_readings()),
            "sessions": [await sessions.start("multi-gpu-f")],
            "info": system_info(url),
        }
    finally:
        await sessions.close_all()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the JSON report here too")
    args = parser.parse_args()
    import torch

    readings = gpu_readings()
    report: dict[str, Any] = {
        "machine": {
            "gpus": [asdict(r) for r in readings],
            "torch": torch.__version__,
            "cuda_devices": torch.cuda.device_count(),
        }
    }
    if len(readings) < 2:
        report["skipped"] = f"needs two GPUs, NVML found {len(readings)}"
        print(json.dumps(report, indent=2))
        return 1
    report["spread"] = spread_step(torch)
    with spawned_fake_openai() as base_url, tempfile.TemporaryDirectory() as data_dir:
        server, url = start_server(base_url, data_dir)
        try:
            wait_until_answering(
                server,
                f"{url}/health",
                what="the AVATAR server",
                log_tail=lambda: "(its output is above)",
                timeout_s=90,
                poll_s=0.3,
            )
            report.update(asyncio.run(server_steps(torch, url)))
        finally:
            stop(server, grace_s=20)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
