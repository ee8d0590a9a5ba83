"""VRAM-aware placement, session admission and the CUDA out-of-memory helpers.

GPU readings come from tests/data/nvml: recorded on an H100 with scripts/gpu_check.py (one card,
idle and nearly full), composed into two-card machines, and the empty reading of this CPU-only
machine. Nothing here needs a GPU.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import weakref
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import websockets
from fastapi import FastAPI

from avatar.api.errors import install_error_handlers
from avatar.errors import EngineFailed
from avatar.settings import Settings
from avatar.system.admission import GpuAdmission, GpuBusy, hq_allowed
from avatar.system.cuda import (
    EngineOverloaded,
    free_cuda_memory,
    is_cuda_oom,
    oom_guard,
    resolve_auto_device,
)
from avatar.system.gpus import GpuReading
from avatar.system.placement import (
    CUDA_CONTEXT_MB,
    TTS_NEEDS,
    EngineNeed,
    apply_placement,
    needs_from_settings,
    plan_for_settings,
    plan_placement,
    visible_gpus,
    whisper_need,
)
from conftest import live_app, scripted_settings
from wsclient import connect

ROOT = Path(__file__).resolve().parents[1]
NVML = Path(__file__).parent / "data" / "nvml"


def readings(name: str) -> list[GpuReading]:
    return [GpuReading(**g) for g in json.loads((NVML / name).read_text())["gpus"]]


def need(slot: str, engine: str, mb: float, requested: str = "auto", **kw: object) -> EngineNeed:
    return EngineNeed(slot, engine, None, mb, requested, **kw)  # type: ignore[arg-type]


def gpu_config() -> list[EngineNeed]:
    """Whisper large-v3 (fp16), a 0.5B GGUF, F5-TTS and CosyVoice2, all on ``auto``."""
    whisper, _ = whisper_need("large-v3", "float16")
    return [
        need("stt", "faster-whisper", whisper),
        need("llm", "llama-cpp", 820.0),
        need("tts.fast", "f5-tts", TTS_NEEDS["f5-tts"][0]),
        need("tts.hq", "cosyvoice2", TTS_NEEDS["cosyvoice2"][0], first_gpu_only=True),
    ]


# --- placement -----------------------------------------------------------------------------


def test_one_h100_hosts_every_engine_and_books_one_context() -> None:
    plan = plan_placement(gpu_config(), readings("one_h100.json"))
    assert [p.device for p in plan.placements] == ["cuda:0"] * 4
    assert all(p.ok and "fits on GPU 0" in p.reason for p in plan.placements)
    expected = sum(n.vram_mb for n in gpu_config()) + CUDA_CONTEXT_MB
    assert plan.gpus[0].booked_mb == pytest.approx(expected, abs=0.2)


def test_two_h100s_spread_engines_onto_the_card_with_most_free_memory() -> None:
    cards = readings("two_h100.json")
    plan = plan_placement(gpu_config(), cards)
    assert {p.gpu_index for p in plan.placements} == {0, 1}
    # Replay largest first: each engine went to the card with the most memory left then.
    left = {r.index: r.free_mb for r in cards}
    for n in sorted(gpu_config(), key=lambda n: -n.vram_mb):
        chosen = next(p for p in plan.placements if p.slot == n.slot)
        assert chosen.gpu_index == max(left, key=lambda i: (left[i], -i)), chosen
        index = chosen.gpu_index
        fresh = left[index] == next(r.free_mb for r in cards if r.index == index)
        left[index] -= n.vram_mb + (CUDA_CONTEXT_MB if fresh else 0)


def test_a_nearly_full_card_gets_nothing_and_large_engines_use_the_second_card() -> None:
    plan = plan_placement(gpu_config(), readings("two_gpus_one_full.json"))
    assert [p.device for p in plan.placements] == ["cuda:0"] * 4
    assert plan.gpus[1].booked_mb == 0
    big = [need(f"llm{i}", "llama-cpp", 30_000.0) for i in range(3)]
    spread = plan_placement(big, readings("two_h100.json"))
    assert [p.gpu_index for p in spread.placements] == [0, 1, 0]


def test_with_card_0_full_the_engines_move_to_card_1_and_cosyvoice_to_the_cpu() -> None:
    """Readings taken on two H100s while another process held card 0 (scripts/gpu_multi_check.py):
    every engine that may use any card goes to card 1; CosyVoice2 may use only card 0, so it
    falls back to the CPU and says why."""
    plan = plan_placement(gpu_config(), readings("two_h100_card0_full.json"))
    devices = {p.slot: p.device for p in plan.placements}
    assert devices == {"stt": "cuda:1", "llm": "cuda:1", "tts.fast": "cuda:1", "tts.hq": "cpu"}
    hq = next(p for p in plan.placements if p.slot == "tts.hq")
    assert "GPU 0" in hq.reason and "510 MB free" in hq.reason and "first visible GPU" in hq.reason
    assert plan.gpus[0].booked_mb == 0


def test_falls_back_to_cpu_when_nothing_fits() -> None:
    huge = [need("llm", "llama-cpp", 90_000.0), need("stt", "faster-whisper", 3901.0)]
    plan = plan_placement(huge, readings("two_gpus_one_full.json"))
    llm, stt = plan.placements
    assert llm.device == "cpu" and llm.ok
    assert "needs 90620 MB" in llm.reason and "runs on CPU" in llm.reason
    assert stt.device == "cuda:0"
    nothing = plan_placement(gpu_config(), readings("none.json"))
    assert {p.device for p in nothing.placements} == {"cpu"}
    assert all("no NVIDIA GPU" in p.reason for p in nothing.placements)


def test_cuda_without_a_gpu_or_a_fit_is_flagged_not_moved() -> None:
    plan = plan_placement([need("stt", "faster-whisper", 3901.0, "cuda")], readings("none.json"))
    assert plan.placements[0].device == "cuda" and not plan.placements[0].ok
    full = plan_placement(
        [need("llm", "llama-cpp", 90_000.0, "cuda")], readings("two_gpus_one_full.json")
    )
    assert full.placements[0].device == "cuda:0" and not full.placements[0].ok


def test_explicit_devices_are_respected_and_booked() -> None:
    needs = [
        need("stt", "faster-whisper", 3901.0, "cpu"),
        need("tts.hq", "f5-tts", 3000.0, "cuda:1"),
        need("llm", "llama-cpp", 820.0, "cuda:7"),
        need("tts.fast", "piper", 400.0),
    ]
    plan = plan_placement(needs, readings("two_h100.json"))
    stt, hq, llm, fast = plan.placements
    assert (stt.device, stt.reason) == ("cpu", "set to cpu")
    assert hq.device == "cuda:1" and hq.ok and plan.gpus[1].booked_mb == 3000 + CUDA_CONTEXT_MB
    assert llm.device == "cuda:7" and not llm.ok and "no GPU 7" in llm.reason
    assert fast.device == "cuda:0"  # card 1 has less left after the explicit booking
    crowded = plan_placement(
        [need("tts.hq", "f5-tts", 8000.0, "cuda:1")], readings("two_gpus_one_full.json")
    )
    assert crowded.placements[0].device == "cuda:1" and not crowded.placements[0].ok


def test_first_gpu_only_engines_stay_off_other_cards() -> None:
    full_first = [replace(r, index=1 - r.index) for r in readings("two_gpus_one_full.json")]
    cosy = need("tts.hq", "cosyvoice2", 4000.0, first_gpu_only=True)
    plan = plan_placement([cosy], full_first)
    assert plan.placements[0].device == "cpu"
    assert "only the first visible GPU" in plan.placements[0].reason
    pinned = need("tts.hq", "cosyvoice2", 4000.0, "cuda:1", first_gpu_only=True)
    plan = plan_placement([pinned], readings("two_h100.json"))
    assert not plan.placements[0].ok and "first visible GPU" in plan.placements[0].reason


def test_cpu_only_remote_and_unknown_devices() -> None:
    needs = [
        need("tts.fast", "espeak-ng", 0.0, "cuda"),
        need("llm", "openai", 0.0, "auto"),
        need("stt", "faster-whisper", 100.0, "gpu0"),
    ]
    espeak, remote, bad = plan_placement(needs, readings("one_h100.json")).placements
    assert espeak.device == "cpu" and not espeak.ok
    assert remote.device == "remote" and remote.ok
    assert not bad.ok and "unknown device 'gpu0'" in bad.reason


def test_the_plan_is_plain_json() -> None:
    data = plan_placement(gpu_config(), readings("two_h100.json"), note="test").to_dict()
    again = json.loads(json.dumps(data))
    assert again["note"] == "test" and len(again["placements"]) == 4
    assert {"slot", "device", "reason", "basis", "ok"} <= set(again["placements"][0])
    assert again["gpus"][0]["left_mb"] == pytest.approx(
        again["gpus"][0]["free_mb"] - again["gpus"][0]["booked_mb"], abs=0.2
    )


def test_cuda_visible_devices_renumbers_the_cards() -> None:
    cards = readings("two_gpus_one_full.json")
    only_second, note = visible_gpus(cards, "1")
    assert [(r.index, r.free_mb) for r in only_second] == [(0, 4267.0)] and "1" in note
    assert visible_gpus(cards, "")[0] == []
    assert [r.free_mb for r in visible_gpus(cards, "1,5,0")[0]] == [4267.0]  # stops at 5
    unchanged, why = visible_gpus(cards, "GPU-8a2f")
    assert unchanged == cards and "ignored" in why
    assert visible_gpus(cards, None) == (cards, "")


def test_settings_become_needs_and_plans_become_settings() -> None:
    settings = Settings(
        stt={"device": "auto", "model": "large-v3", "compute_type": "float16"},
        llm={"gpu_layers": -1},
        tts={"hq": {"engine": "cosyvoice2", "device": "auto"}},
    )
    needs = {n.slot: n for n in needs_from_settings(settings)}
    assert needs["stt"].vram_mb == pytest.approx(4521 - CUDA_CONTEXT_MB)
    assert needs["llm"].requested == "cuda" and needs["llm"].vram_mb > 469
    assert needs["tts.hq"].first_gpu_only and needs["tts.fast"].requested == "cpu"
    plan = plan_placement(list(needs.values()), readings("one_h100.json"))
    placed = apply_placement(settings, plan)
    assert placed.stt.device == "cuda:0" and placed.tts.hq is not None
    assert placed.tts.hq.device == "cuda:0" and placed.tts.fast.device == "cpu"
    assert settings.stt.device == "auto"  # the original is untouched
    on_cpu = apply_placement(settings, plan_placement(list(needs.values()), readings("none.json")))
    assert on_cpu.stt.device == "cpu" and on_cpu.llm.gpu_layers == -1  # cuda asked: kept
    hidden = plan_for_settings(settings, readings("one_h100.json"), {"CUDA_VISIBLE_DEVICES": ""})
    assert hidden.device_for("stt") == "cpu" and "hides every GPU" in hidden.note
    assert plan_for_settings(settings, readings("one_h100.json"), {}).gpu_for("tts.hq") == 0


def test_whisper_estimates_cite_measurements_or_say_estimate() -> None:
    large, basis = whisper_need("Systran/faster-whisper-large-v3", "int8_float16")
    assert large == pytest.approx(2953 - CUDA_CONTEXT_MB) and basis.startswith("measured")
    small, basis = whisper_need("whisper-small", "int8_float16")
    assert 0 < small < 1000 and basis.startswith("estimate")


# --- admission -----------------------------------------------------------------------------


def test_sessions_go_to_the_emptier_card_until_all_are_full() -> None:
    seats = GpuAdmission(readings("two_h100.json"), sessions_per_gpu=2)
    assert [seats.admit(f"s{i}").gpu_index for i in range(4)] == [0, 1, 0, 1]
    with pytest.raises(GpuBusy) as info:
        seats.admit("s4")
    assert info.value.http_status == 503 and info.value.headers["Retry-After"] == "30"
    assert "GPU 1: 2/2 sessions" in info.value.message
    seats.release("s1")
    assert seats.admit("s5").gpu_index == 1
    assert seats.status()["sessions"] == 4


def test_ties_go_to_the_card_with_more_free_memory_and_full_cards_take_none() -> None:
    cards = readings("two_h100.json")
    roomier = [cards[0], replace(cards[1], free_mb=cards[0].free_mb + 50)]
    assert GpuAdmission(roomier).admit("a").gpu_index == 1
    skewed = GpuAdmission(readings("two_gpus_one_full.json"), min_free_mb=8192)
    assert {skewed.admit(f"s{i}").gpu_index for i in range(5)} == {0}
    cpu = GpuAdmission(readings("none.json"))
    assert cpu.admit("x").gpu_index is None


def test_admission_rereads_the_cards_when_its_readings_are_stale() -> None:
    """A card that filled up since the last reading (another process, a big engine) takes no
    new session, and seats return to it once it has room again."""
    idle, full = readings("two_h100.json"), readings("two_gpus_one_full.json")
    now = [0.0]
    current = [idle]
    seats = GpuAdmission(
        idle, min_free_mb=8192, reread=lambda: current[0], max_age_s=2.0, clock=lambda: now[0]
    )
    assert seats.admit("a").gpu_index == 0
    current[0] = full  # card 1 fills; the readings are still fresh, so admit does not see it
    now[0] = 1.0
    assert seats.admit("b").gpu_index == 1
    now[0] = 3.0  # stale: admit re-reads and finds card 1 full
    assert [seats.admit(s).gpu_index for s in ("c", "d")] == [0, 0]
    assert seats.status()["cards"][1]["free_mb"] == full[1].free_mb
    current[0] = idle
    now[0] = 6.0
    assert seats.admit("e").gpu_index == 1


def test_hq_tts_falls_back_to_fast_under_load() -> None:
    seats = GpuAdmission(readings("two_h100.json"), sessions_per_gpu=4, hq_max_load=0.75)
    for i in range(4):
        seats.admit(f"s{i}")
    assert seats.hq_allowed(hq_gpu=0) == (True, "GPU load 4/8 sessions is under 75%")
    seats.admit("s4")  # lands on card 0: 3 of its 4 seats
    assert seats.hq_allowed(hq_gpu=0) == (False, "GPU 0 holds 3/4 sessions")
    assert seats.hq_allowed(hq_gpu=1)[0]
    seats.admit("s5")
    allowed, why = seats.hq_allowed(hq_gpu=1)
    assert not allowed and "6/8" in why
    low = GpuAdmission(readings("two_gpus_one_full.json"))
    low.admit("a")
    assert low.hq_allowed(hq_gpu=0)[0]
    assert hq_allowed(low.load(), hq_gpu=1, min_free_mb=8192)[1].startswith("GPU 1 has 4267 MB")
    assert hq_allowed(GpuAdmission([]).load()) == (True, "no GPU load to weigh")


# --- CUDA out of memory --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "oom"),
    [
        ("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total)", True),
        ("CUDA error: out of memory", True),
        ("CUDA failed with error out of memory", True),  # CTranslate2
        ("ggml_cuda: cudaMalloc failed: out of memory", True),  # llama.cpp
        ("CUDA failure 2: out of memory ; GPU=0", True),  # onnxruntime
        ("CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)", True),
        ("DefaultCPUAllocator: not enough memory", False),
        ("out of memory", False),
        ("CUDA error: device-side assert triggered", False),
    ],
)
def test_is_cuda_oom_reads_each_library_message(message: str, oom: bool) -> None:
    assert is_cuda_oom(RuntimeError(message)) is oom


def test_is_cuda_oom_sees_torch_class_and_wrapped_causes() -> None:
    # Same name and module as torch.OutOfMemoryError (torch is not installed here).
    torch_oom = type("OutOfMemoryError", (RuntimeError,), {"__module__": "torch"})
    assert is_cuda_oom(torch_oom("allocation failed"))
    try:
        try:
            raise RuntimeError("CUDA error: out of memory")
        except RuntimeError as exc:
            raise EngineFailed("faster-whisper failed while transcribing") from exc
    except EngineFailed as wrapped:
        assert is_cuda_oom(wrapped)
    assert not is_cuda_oom(MemoryError())


def test_free_cuda_memory_is_a_no_op_without_torch() -> None:
    if "torch" in sys.modules:
        pytest.skip("torch is loaded in this process")
    freed = free_cuda_memory()
    assert not freed.ran and freed.released_mb == 0 and "not loaded" in freed.note
    assert resolve_auto_device("auto") == "cpu" and resolve_auto_device("cuda:1") == "cuda:1"


class Activations:
    """Stands in for the tensors a request had allocated when it ran out of memory."""


def test_oom_guard_releases_the_failed_request_and_answers_503() -> None:
    refs: list[weakref.ref[Activations]] = []

    def request() -> None:
        held = Activations()
        refs.append(weakref.ref(held))
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB")

    with pytest.raises(EngineOverloaded) as info, oom_guard("F5-TTS", retry_after_s=2.5):
        request()
    assert refs[0]() is None  # the failed frame's locals are gone while the error is alive
    assert info.value.code == "gpu_out_of_memory" and info.value.http_status == 503
    assert info.value.headers == {"Retry-After": "3"}
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(ValueError, match="not an oom"), oom_guard("F5-TTS"):
        raise ValueError("not an oom")


async def test_the_api_turns_overload_into_503_with_retry_after() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/oom")
    async def oom() -> None:
        raise EngineOverloaded("CosyVoice2 ran out of GPU memory", retry_after_s=4)

    @app.get("/busy")
    async def busy() -> None:
        raise GpuBusy("every GPU is full", retry_after_s=12)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        oom_response, busy_response = await client.get("/oom"), await client.get("/busy")
    assert oom_response.status_code == 503 and oom_response.headers["retry-after"] == "4"
    assert oom_response.headers["content-type"] == "application/problem+json"
    assert oom_response.json()["code"] == "gpu_out_of_memory"
    assert busy_response.status_code == 503 and busy_response.headers["retry-after"] == "12"
    assert busy_response.json()["code"] == "gpu_busy"


# --- scripts/gpu_check.py on this CPU machine ----------------------------------------------


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_reads_nvidia_smi_csv() -> None:
    # Recorded with --query-gpu=SMI_QUERY --format=csv,noheader,nounits on the H100.
    parsed = load_script().parse_smi_csv("0, NVIDIA H100 80GB HBM3, 81559, 81079, 0, 0\n")
    assert parsed == [GpuReading(0, "NVIDIA H100 80GB HBM3", 81559.0, 81079.0, 0.0, 0.0)]


def test_gpu_check_degrades_clearly_without_torch_or_gpu() -> None:
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "torch is not installed" in report["workload"]["skipped"]
    assert report["oom"] == {"skipped": "needs a CUDA GPU"}
    assert {p["device"] for p in report["placement"]["plan"]["placements"]} == {"cpu"}


# --- voice sessions over /ws/chat on two (recorded) cards -----------------------------------


async def test_voice_sessions_take_the_emptier_card_and_get_gpu_busy_when_all_are_full(
    tmp_path: Path, model_store: Any
) -> None:
    settings = scripted_settings(tmp_path, max_sessions_per_client=8)
    with live_app(settings, models=model_store) as server:
        seats = GpuAdmission(readings("two_h100.json"), sessions_per_gpu=1)
        server.state.services.gpu_admission = seats
        async with connect(server) as a, connect(server) as b:
            first, second = json.loads(await a.recv()), json.loads(await b.recv())
            assert [first["gpu"]["index"], second["gpu"]["index"]] == [0, 1]
            assert "fewest sessions (0/1)" in second["gpu"]["reason"]
            async with connect(server) as c:
                refusal = json.loads(await c.recv())
                assert refusal["type"] == "error" and refusal["code"] == "gpu_busy"
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await c.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            assert seats.status()["sessions"] == 2  # the refused one holds no seat
        async with connect(server) as d:  # a and b left: their seats are free again
            assert json.loads(await d.recv())["gpu"]["index"] == 0
