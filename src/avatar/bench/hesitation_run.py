"""The hesitation run of ``avatar bench latency``: questions with a 700 ms pause inside, streamed
in real time through the real WebSocket; did each stay one turn?

A question *stayed one turn* when the server heard it as one utterance: exactly one final
transcript, sent after the words that follow the pause had started arriving (a turn ended at the
pause is transcribed before them, and what follows becomes a second turn or is taken for a
backchannel over the reply).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from avatar.bench.hesitation import PAUSE_S, RATE, PausedClip
from avatar.bench.latency import CHUNK_MS  # the web UI's microphone frames

LEAD_S, TAIL_S = 0.4, 3.0


@dataclass(frozen=True, slots=True)
class HesitationResult:
    voice: str
    text: str
    one_turn: bool
    finals: int
    v2v_ms: float | None  # from the end of the whole question to the first reply audio
    # replies started at a pause and dropped when the user went on: how many, and their cost
    wasted: float = 0.0
    wasted_ms: float = 0.0
    wasted_cpu_ms: float = 0.0


async def paused_turn(ws: Any, clip: PausedClip) -> HesitationResult:
    """Stream lead silence, the first half, the pause, the rest, then silence until the reply
    has played; collect what the server said meanwhile."""
    lead = bytes(int(LEAD_S * RATE) * 2)
    pause = bytes(int(PAUSE_S * RATE) * 2)
    first, rest = clip.first.to_s16le(), clip.rest.to_s16le()
    pcm = lead + first + pause + rest
    rest_at_s = len(lead + first + pause) / 2 / RATE
    end_s = len(pcm) / 2 / RATE
    step = RATE * 2 * CHUNK_MS // 1000
    events: list[tuple[float, dict[str, Any]]] = []
    start = time.monotonic()

    async def receive() -> None:
        while True:
            event = json.loads(await ws.recv())
            events.append((time.monotonic() - start, event))

    receiver = asyncio.create_task(receive())
    try:
        i, silence = 0, bytes(step)
        while True:
            now = time.monotonic() - start
            ends = [t for t, e in events if e["type"] == "turn_end"]
            audio = sum(len(e["data"]) * 3 / 8 / e["sample_rate"] for _, e in _audio(events))
            if ends and now > max(ends) + 0.5 and now > end_s + TAIL_S + audio:
                break
            if now > end_s + 60:
                break
            await ws.send(pcm[i : i + step] if i < len(pcm) else silence)
            i += step
            await asyncio.sleep(max(0.0, start + i / 2 / RATE - time.monotonic()))
    finally:
        receiver.cancel()
    finals = [t for t, e in events if e["type"] == "transcript" and e.get("final")]
    first_audio = next((t for t, _ in _audio(events)), None)
    ends = [e.get("metrics") or {} for _, e in events if e["type"] == "turn_end"]
    return HesitationResult(
        clip.voice,
        clip.text,
        len(finals) == 1 and finals[0] > rest_at_s,
        len(finals),
        round((first_audio - end_s) * 1000, 1) if first_audio is not None else None,
        *(
            float(sum(m.get(key) or 0 for m in ends))
            for key in ("speculations_wasted", "speculation_wasted_ms", "speculation_wasted_cpu_ms")
        ),
    )


def _audio(events: list[tuple[float, dict[str, Any]]]) -> list[tuple[float, dict[str, Any]]]:
    return [(t, e) for t, e in events if e["type"] == "audio_response"]


async def run_hesitation(
    ws_url: str,
    token: str,
    clips: list[PausedClip],
    on_clip: Callable[[HesitationResult], None],
) -> list[HesitationResult]:
    """Every clip in a fresh session (one conversation's history does not steer the next)."""
    import websockets

    results = []
    for clip in clips:
        async with websockets.connect(
            f"{ws_url}/ws/chat",
            max_size=1 << 22,
            additional_headers={"Authorization": f"Bearer {token}"},
        ) as ws:
            await ws.recv()  # session_started
            result = await paused_turn(ws, clip)
        results.append(result)
        on_clip(result)
    return results


def summarize_hesitation(results: list[HesitationResult]) -> dict[str, float]:
    by_voice: dict[str, float] = {}
    for r in results:
        by_voice[f"one_turn_{r.voice}"] = by_voice.get(f"one_turn_{r.voice}", 0.0) + r.one_turn
    return {
        "clips": float(len(results)),
        "one_turn": float(sum(r.one_turn for r in results)),
        "one_turn_pct": round(100 * sum(r.one_turn for r in results) / max(1, len(results)), 1),
        **by_voice,
        "speculations_wasted": sum(r.wasted for r in results),
        "speculation_wasted_ms": round(sum(r.wasted_ms for r in results), 1),
        "speculation_wasted_cpu_ms": round(sum(r.wasted_cpu_ms for r in results), 1),
    }
