"""`avatar bench faults`: does one session's failing LLM backend slow the other sessions down?

Bystander sessions ask typed questions back to back over the real WebSocket (scripted LLM and
TTS with a realistic pace, as `avatar bench latency`'s fake runs) and time each turn from the
question sent to the first reply audio received. One window runs with no faulty session (the
baseline); then one window per fault mode, in which one more session keeps asking an LLM served
by the fake OpenAI-compatible backend (:mod:`avatar.testing.fake_openai`, in a process of its
own) that fails in that mode; a last baseline window shows the run-to-run noise. All sessions
share one server (in this process, as `avatar bench latency` runs it): one event loop, one hub.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avatar.bench.latency import percentile, served
from avatar.engines.base import ChatMessage, GenerationOptions, LlmCapabilities
from avatar.engines.hub import EngineHub
from avatar.engines.llm.openai_remote import OpenAIChat
from avatar.settings import Settings, load_settings
from avatar.testing.fake_openai import (
    DEFAULT_MODEL,
    FakeMode,
    closed_port,
    set_fake_mode,
    spawned_fake_openai,
)
from avatar.testing.fakes import ScriptedChat, ToneTts

# The faults of issue #6, in the order they are measured.
FAULT_MODES: tuple[FakeMode, ...] = (
    FakeMode.REFUSED,
    FakeMode.HTTP_500,
    FakeMode.HTTP_401,
    FakeMode.HANG_BEFORE_FIRST_TOKEN,
    FakeMode.DROP_AFTER_K,
    FakeMode.MALFORMED_STREAM,
    FakeMode.TRICKLE,
    FakeMode.OOM,
)
BASELINE = "none"
FAULT_MARK = "[fault] "  # questions that start with it go to the faulty backend
TOKEN = "faults-token-0123456789abcdef"
# Shorter than the defaults (5/20/10 s) so that a window sees several faulty turns.
CONNECT_S, FIRST_TOKEN_S, READ_S = 2.0, 3.0, 2.0
FAULTY_PAUSE_S = 0.25  # between the faulty session's questions (a user trying again, fast)


class FaultRouter:
    """The hub's LLM: questions marked with FAULT_MARK go to ``faulty``, the rest to ``healthy``."""

    name = "fault-router"
    loaded = True
    capabilities = LlmCapabilities(streaming=True)

    def __init__(self, healthy: ScriptedChat) -> None:
        self.healthy = healthy
        self.faulty: OpenAIChat | None = None

    def load(self) -> None: ...

    def unload(self) -> None: ...

    def count_tokens(self, text: str) -> int:
        return self.healthy.count_tokens(text)

    def stream_chat(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[str]:
        last = messages[-1].content if messages else ""
        if self.faulty is not None and last.startswith(FAULT_MARK):
            return self.faulty.stream_chat(messages, options)
        return self.healthy.stream_chat(messages, options)


@dataclass
class Window:
    """One measured window: the fault (or none) and what every session saw."""

    mode: str
    bystander_ms: list[float] = field(default_factory=list)  # question -> first audio
    bystander_errors: int = 0
    faulty_turns: int = 0
    faulty_errors: dict[str, int] = field(default_factory=dict)  # error code -> count


async def _turn(ws: Any, text: str) -> tuple[float | None, str | None]:
    """Ask ``text``; (ms to the first audio or None, error code or None) once the turn ends."""
    start = time.monotonic()
    await ws.send(json.dumps({"type": "text", "text": text}))
    first_audio, error = None, None
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if event["type"] == "audio_response" and first_audio is None:
            first_audio = (time.monotonic() - start) * 1000
        elif event["type"] == "error":
            error = event["code"]
        elif event["type"] == "turn_end":
            return first_audio, error


async def _session(ws_url: str, token: str) -> Any:
    import websockets

    ws = await websockets.connect(
        f"{ws_url}/ws/chat",
        max_size=1 << 22,
        additional_headers={"Authorization": f"Bearer {token}"},
    )
    await ws.recv()  # session_started
    return ws


async def _window(
    ws_url: str, token: str, window: Window, bystanders: int, seconds: float, faulty: bool
) -> None:
    stop = time.monotonic() + seconds

    async def bystander(n: int) -> None:
        ws = await _session(ws_url, token)
        try:
            while time.monotonic() < stop:
                ms, error = await _turn(ws, f"Question {n}: what is the capital of France?")
                if ms is None or error is not None:
                    window.bystander_errors += 1
                else:
                    window.bystander_ms.append(round(ms, 1))
        finally:
            await ws.close()

    async def faulty_session() -> None:
        ws = await _session(ws_url, token)
        try:
            while time.monotonic() < stop:
                _, error = await _turn(ws, FAULT_MARK + "Say hello.")
                window.faulty_turns += 1
                if error is not None:
                    window.faulty_errors[error] = window.faulty_errors.get(error, 0) + 1
                await asyncio.sleep(FAULTY_PAUSE_S)
        finally:
            await ws.close()

    tasks = [bystander(n) for n in range(bystanders)]
    if faulty:
        tasks.append(faulty_session())
    await asyncio.gather(*tasks)


def _faulty_engine(mode: FakeMode, fake_url: str) -> OpenAIChat:
    url = f"http://127.0.0.1:{closed_port()}/v1" if mode is FakeMode.REFUSED else fake_url
    if mode is not FakeMode.REFUSED:
        set_fake_mode(fake_url, mode)
    return OpenAIChat(
        base_url=url,
        model=DEFAULT_MODEL,
        connect_timeout_s=CONNECT_S,
        first_token_timeout_s=FIRST_TOKEN_S,
        read_timeout_s=READ_S,
    )


def measure_fault_isolation(
    base: Settings,
    data_dir: Path,
    *,
    modes: Sequence[FakeMode] = FAULT_MODES,
    bystanders: int = 4,
    window_s: float = 15.0,
    on_window: Callable[[str, float], None] | None = None,
) -> list[Window]:
    """The baseline window, one window per fault mode, and the baseline again.

    ``on_window(name, seconds)`` is called as each window starts (for a progress bar).
    """
    spare = 2 * bystanders + 2  # the last window's sessions may still be closing
    settings = load_settings(
        data_dir=data_dir,
        api_token=TOKEN,
        max_sessions=spare,
        max_sessions_per_client=spare,
        server={"preload": False},
        models={"cache_dir": base.model_cache_dir},
    )
    hub = EngineHub(settings)
    # About a fast real pipeline: first token after 150 ms, 20 ms a word, TTS starts in 50 ms.
    router = FaultRouter(
        ScriptedChat("The capital of France is Paris.", interval_s=0.02, first_token_s=0.15)
    )
    hub.override("llm", router)
    hub.override("tts.fast", ToneTts(ms_per_word=100, delay_s=0.05))
    plan: list[tuple[str, FakeMode | None]] = [(BASELINE, None)]
    plan += [(mode.value, mode) for mode in modes]
    plan += [(f"{BASELINE} (again)", None)]
    windows: list[Window] = []
    with spawned_fake_openai() as fake_url, served(settings, hub) as ws_url:
        for name, mode in plan:
            router.faulty = _faulty_engine(mode, fake_url) if mode is not None else None
            if on_window:
                on_window(name, window_s)
            window = Window(name)
            asyncio.run(_window(ws_url, TOKEN, window, bystanders, window_s, mode is not None))
            windows.append(window)
    hub.close()
    return windows


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.5), 1),
        "p95": round(percentile(values, 0.95), 1),
    }


def summarize(windows: list[Window]) -> list[dict[str, Any]]:
    """One row per window: bystander p50/p95 and their change from the first baseline in %."""
    base = _stats(windows[0].bystander_ms)
    rows = []
    for window in windows:
        stats = _stats(window.bystander_ms)
        rows.append(
            {
                "fault": window.mode,
                "bystander_turns": stats["n"],
                "bystander_p50_ms": stats["p50"],
                "bystander_p95_ms": stats["p95"],
                "p50_change_pct": _change(stats["p50"], base["p50"]),
                "p95_change_pct": _change(stats["p95"], base["p95"]),
                "bystander_errors": window.bystander_errors,
                "faulty_turns": window.faulty_turns,
                "faulty_errors": dict(window.faulty_errors),
            }
        )
    return rows


def _change(value: float, base: float) -> float | None:
    if not base or value != value or base != base:  # no data (NaN)
        return None
    return round((value - base) / base * 100, 1)


def write_json(rows: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


def plot(windows: list[Window], rows: list[dict[str, Any]], path: Path) -> None:
    """Bystander latency per window (box and points), the baseline p50 and its ±20 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.8))
    labels = [r["fault"] for r in rows]
    data = [w.bystander_ms or [float("nan")] for w in windows]
    ax.boxplot(data, tick_labels=labels, showfliers=False)
    for i, values in enumerate(data, start=1):
        ax.scatter([i] * len(values), values, alpha=0.25, s=6)
    base = rows[0]["bystander_p50_ms"]
    ax.axhline(base, color="tab:green", lw=1, label=f"baseline p50 {base:.0f} ms")
    ax.axhspan(base * 0.8, base * 1.2, color="tab:green", alpha=0.1, label="±20 %")
    ax.set_ylabel("bystander turn: question → first audio (ms)")
    ax.set_title("Other sessions' latency while one session's LLM backend fails")
    ax.tick_params(axis="x", rotation=30)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
