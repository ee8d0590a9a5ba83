"""`avatar bench latency`: voice-to-voice through the real WebSocket, streamed in real time.

Voice-to-voice = from the moment the client sent the last voiced sample of the question to the
first reply audio it received; to the first sound = to the first audible sample in it (the reply
audio played as it arrives), which is later by whatever silence the voice starts with. Each run
starts its own server on a loopback port (real uvicorn, real WebSocket) so what is measured is
what a client sees.
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avatar.audio.edges import sound_span
from avatar.audio.pcm import PcmAudio
from avatar.bench.voices import VOICES, QuestionVoices
from avatar.engines.hub import EngineHub
from avatar.engines.vad.segments import speech_segments
from avatar.settings import Settings

QUESTIONS = [
    "What is the capital of France?",
    "How many days are there in a week?",
    "Can you name a colour of the sky?",
    "What do bees make?",
    "Is water wet or dry?",
]
CHUNK_MS = 32  # as the web UI sends the microphone: one VAD frame a message
# The sequential baseline is the original cascade, every stage waiting for the one before: the
# turn ends by the plain silence timer (no end-of-turn models, no reply started at a pause), then
# the whole transcript, the whole reply, the whole audio. The engines are the streaming run's.
CASCADE_TURN = {"speculate": False, "use_text": False, "engine": ""}
LEAD_S, TAIL_S = 0.4, 1.5
PARTS = (
    "endpointing_ms",
    "stt_ms",
    "llm_first_token_ms",
    "first_text_ms",
    "tts_first_audio_ms",
    "voice_to_voice_ms",
)


@dataclass(frozen=True, slots=True)
class Clip:
    voice: str
    text: str
    pcm: bytes  # s16le mono 16 kHz: lead silence + speech
    speech_end_s: float


@dataclass
class TurnResult:
    voice: str
    v2v_ms: float  # measured by the client
    metrics: dict[str, Any] = field(default_factory=dict)
    text: str = ""  # the question
    heard: str = ""  # the final transcript
    sound_ms: float | None = None  # to the first audible reply sample; None: the reply was silent

    def record(self) -> dict[str, Any]:
        """One turn for the JSON report: what was asked, the client's time, how it ended."""
        keep = (*PARTS, "endpoint_reason", "end_of_turn_probability", "speculative")
        parts = {k: self.metrics[k] for k in keep if self.metrics.get(k) is not None}
        said = {"voice": self.voice, "text": self.text, "heard": self.heard}
        heard = {"v2v_client_ms": self.v2v_ms, "first_sound_client_ms": self.sound_ms}
        return {**said, **heard, **parts}


async def make_clips(hub: EngineHub) -> list[Clip]:
    """The questions in two voices: Piper joe (neural) and espeak-ng en-us (formant), the same
    samples every run (avatar.bench.voices)."""
    voices = QuestionVoices(hub)
    clips = []
    try:
        for voice in VOICES:
            for text in QUESTIONS:
                speech = await voices.speak(voice, text)
                lead = PcmAudio.silence(LEAD_S, 16_000)
                # "End of speech" is the last voiced sample, as the VAD sees it, not the clip's end.
                segments = speech_segments(speech, hub.new_vad())
                end = segments[-1][1] if segments else speech.duration_s
                clips.append(Clip(voice, text, lead.concat(speech).to_s16le(), LEAD_S + end))
    finally:
        voices.close()
    return clips


async def one_turn(ws: Any, clip: Clip) -> TurnResult:
    """Stream ``clip`` in real time (then silence, as a live mic would) and time the answer."""
    step = 16_000 * 2 * CHUNK_MS // 1000
    speech_end_sent = 0.0
    answered = asyncio.Event()

    async def send() -> None:
        nonlocal speech_end_sent
        silence = bytes(step)
        start = time.monotonic()
        i = 0
        while i < len(clip.pcm) or not answered.is_set():
            chunk = clip.pcm[i : i + step] if i < len(clip.pcm) else silence
            await ws.send(chunk)
            i += step
            sent_s = i / 32_000
            if not speech_end_sent and sent_s >= clip.speech_end_s:
                # the last voiced sample left with this chunk (minus the part after it)
                speech_end_sent = time.monotonic() - (sent_s - clip.speech_end_s)
            await asyncio.sleep(max(0.0, start + sent_s - time.monotonic()))
            if time.monotonic() - start > 120:
                return

    sender = asyncio.create_task(send())
    first_audio = None
    audio_s = 0.0
    before_sound_s, sounded = 0.0, False  # reply audio received before its first sound
    seen: list[str] = []  # what this turn received, to tell why one never ended
    heard = ""
    try:
        while True:
            try:
                event = json.loads(await asyncio.wait_for(ws.recv(), 120))
            except TimeoutError:
                raise TimeoutError(
                    f"nothing for 120 s; clip {clip.voice} {clip.text[:40]!r}; got {seen[-6:]}"
                ) from None
            seen.append(_label(event))
            if event["type"] == "transcript" and event.get("final"):
                heard = event.get("text", "")
            if event["type"] == "audio_response":
                first_audio = first_audio or time.monotonic()
                audio_s += len(event["data"]) * 3 / 4 / 2 / event["sample_rate"]
                if not sounded:
                    silent_s, sounded = _silence_before_sound(event)
                    before_sound_s += silent_s
            if event["type"] == "turn_end":
                break
            if event["type"] == "error":
                raise RuntimeError(f"server error: {event['code']}: {event['message']}")
        # Listen to the reply as a person would (the mic keeps sending silence) before the next
        # question; asking over it would be barge-in, or be taken for echo.
        played = (first_audio or time.monotonic()) + audio_s + 0.5
        await asyncio.sleep(max(0.0, played - time.monotonic()))
    finally:
        answered.set()
        await sender
    v2v = ((first_audio or time.monotonic()) - speech_end_sent) * 1000
    sound = round(v2v + 1000 * before_sound_s, 1) if sounded else None
    return TurnResult(clip.voice, round(v2v, 1), event["metrics"], clip.text, heard, sound)


def _silence_before_sound(event: dict[str, Any]) -> tuple[float, bool]:
    """Seconds of a reply audio chunk before its first sound, and whether it has any."""
    audio = PcmAudio.from_s16le(base64.b64decode(event["data"]), event["sample_rate"])
    span = sound_span(audio.samples, audio.sample_rate)
    if span is None:
        return audio.duration_s, False
    return span[0] / audio.sample_rate, True


def _label(event: dict[str, Any]) -> str:
    if event["type"] == "transcript":
        return f"transcript({'final' if event.get('final') else 'partial'}: {event['text'][:30]!r})"
    return str(event["type"])


async def run_sessions(
    ws_url: str,
    token: str,
    clips: list[Clip],
    turns: int,
    sessions: int,
    on_turn: Callable[[TurnResult], None],
) -> list[TurnResult]:
    import websockets

    async def session(offset: int) -> list[TurnResult]:
        results = []
        async with websockets.connect(
            f"{ws_url}/ws/chat",
            max_size=1 << 22,
            additional_headers={"Authorization": f"Bearer {token}"},
        ) as ws:
            await ws.recv()  # session_started
            for n in range(turns):
                result = await one_turn(ws, clips[(offset + n) % len(clips)])
                results.append(result)
                on_turn(result)
        return results

    groups = await asyncio.gather(*(session(i) for i in range(sessions)))
    return [r for group in groups for r in group]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize(results: list[TurnResult]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    series = {
        "voice_to_voice_client_ms": [r.v2v_ms for r in results],
        "first_sound_client_ms": [r.sound_ms for r in results if r.sound_ms is not None],
    }
    for part in PARTS:
        series[part] = [float(r.metrics[part]) for r in results if r.metrics.get(part) is not None]
    # From the endpoint decision to the first audio handed to the socket, on the server's clock:
    # with the scripted (zero-time) engines this is what the server itself adds.
    series["after_endpoint_ms"] = [
        float(r.metrics["voice_to_voice_ms"]) - float(r.metrics.get("endpointing_ms") or 0)
        for r in results
        if r.metrics.get("voice_to_voice_ms") is not None
    ]
    for name, values in series.items():
        if values:
            out[name] = {
                "p50": round(statistics.median(values), 1),
                "p95": round(percentile(values, 0.95), 1),
                "mean": round(statistics.fmean(values), 1),
                "n": len(values),
            }
    out["speculation"] = speculation_summary(results)
    return out


def speculation_summary(results: list[TurnResult]) -> dict[str, float]:
    """Turns answered by a reply held since the first pause (hits), replies dropped because the
    user went on (wasted) and their engine time, and how many turns each endpoint rule ended."""
    summary = {
        "hits": float(sum(r.metrics.get("speculative") == 1.0 for r in results)),
        "wasted": float(sum(r.metrics.get("speculations_wasted") or 0 for r in results)),
        "wasted_ms": float(sum(r.metrics.get("speculation_wasted_ms") or 0 for r in results)),
        "wasted_cpu_ms": float(
            sum(r.metrics.get("speculation_wasted_cpu_ms") or 0 for r in results)
        ),
        "turns": float(len(results)),
    }
    for r in results:
        reason = f"ended_by_{r.metrics.get('endpoint_reason') or 'unknown'}"
        summary[reason] = summary.get(reason, 0.0) + 1
    return summary


@contextmanager
def served(settings: Settings, hub: EngineHub) -> Iterator[str]:
    """Run the real app on a free loopback port in this process; yields ws://host:port."""
    from avatar.api.app import create_app
    from avatar.testing.serving import serve_in_thread

    app = create_app(settings, hub)
    # preloading the real models may take minutes on a small machine
    with serve_in_thread(
        app, what="benchmark server", start_timeout_s=600, ws_max_size=1 << 20
    ) as served:
        yield f"ws://{served.host}"


def plot(runs: dict[str, list[TurnResult]], path: Path) -> None:
    """Latency distributions, one box per run, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = list(runs)
    ax.boxplot([[r.v2v_ms for r in runs[n]] for n in names], tick_labels=names, showfliers=True)
    for i, name in enumerate(names, start=1):
        values = [r.v2v_ms for r in runs[name]]
        ax.scatter([i] * len(values), values, alpha=0.4, s=12)
    ax.set_ylabel("voice-to-voice (ms, client-measured)")
    ax.set_title("AVATAR voice-to-voice latency")
    ax.grid(axis="y", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
