"""AVATAR against Pipecat, side by side: the same models, the same WAVs, the same WebSocket drive.

Run with AVATAR's venv from the repository root (see benchmarks/README.md)::

    flock /tmp/avatar-measure.lock .venv/bin/python benchmarks/peers.py --turns 20 \
        --json docs/benchmarks/peers.json --plot docs/benchmarks/peers.png

One llama_cpp.server (benchmarks/llm_server.py) serves the Qwen2.5 GGUF to every system. Each
system then runs in its own fresh process, one after the other: ``avatar serve`` in streaming and
in sequential mode (AVATAR's remote ``openai`` LLM engine pointed at that server), and
benchmarks/pipecat_bot.py in benchmarks/.venv-pipecat. The client streams each WAV in 20 ms
binary frames in real time, keeps streaming silence while the reply plays, and measures
voice-to-voice from the last voiced sample of the WAV (AVATAR's Silero, benchmarks/audio/
manifest.json) to the first reply audio it receives. CPU time (user+system, the process and its
children) is read with psutil around each turn, for the system's process and for the LLM server;
peak RSS is the system process's VmHWM at the end of its run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
AUDIO = BENCH / "audio"
PIPECAT_PY = BENCH / ".venv-pipecat" / "bin" / "python"
FRAME_MS = 20
FRAME_BYTES = 16_000 * 2 * FRAME_MS // 1000
TOKEN = "peers-benchmark-token-0123456789abcdef"
LLM_ALIAS = "qwen2.5-0.5b-instruct"
SYSTEMS = (
    "avatar-default",
    "avatar-streaming",
    "avatar-sequential",
    "pipecat",
    "pipecat-early-stt",
    "pipecat-smart-turn",
)
STAGES = ("endpoint_ms", "stt_done_ms", "llm_first_ms", "tts_first_ms")
console = Console(stderr=True, width=170)


@dataclass(frozen=True, slots=True)
class Clip:
    file: str
    text: str
    voice: str
    pcm: bytes
    speech_end_s: float
    warmup: bool


@dataclass
class Turn:
    system: str
    clip: str
    question: str
    transcript: str | None = None
    reply: str | None = None
    v2v_ms: float | None = None
    stages: dict[str, float | None] = field(default_factory=dict)
    cpu_s: float = 0.0  # the system's process (and children) during the turn
    llm_cpu_s: float = 0.0  # the shared llama_cpp.server during the turn
    reply_audio_s: float = 0.0
    error: str | None = None


def load_clips() -> list[Clip]:
    manifest = json.loads((AUDIO / "manifest.json").read_text(encoding="utf-8"))
    clips = []
    for item in manifest:
        with wave.open(str(AUDIO / item["file"]), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16_000, 1, 2)
            pcm = w.readframes(w.getnframes())
        clips.append(
            Clip(
                item["file"],
                item["text"],
                item["voice"],
                pcm,
                item["speech_end_s"],
                item["warmup"],
            )
        )
    return clips


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on port {port} within {timeout} s")


def cpu_seconds(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def model_paths() -> dict[str, Path]:
    from avatar.models.store import ModelStore
    from avatar.settings import Settings

    store = ModelStore(Settings().model_cache_dir)
    return {name: store.path(name) for name in ("whisper-base", LLM_ALIAS, "piper-joe")}


# --- the client ----------------------------------------------------------------------------------


async def stream_clip(ws: Any, clip: Clip, done: asyncio.Event, marks: dict[str, float]) -> None:
    """Send ``clip`` in real time, then silence until ``done``; marks the speech end as sent."""
    silence = bytes(FRAME_BYTES)
    start = time.monotonic()
    marks["start"] = start
    i = 0
    while i < len(clip.pcm) or not done.is_set():
        chunk = clip.pcm[i : i + FRAME_BYTES] if i < len(clip.pcm) else silence
        await ws.send(chunk)
        i += FRAME_BYTES
        sent_s = i / 32_000
        if "speech_end" not in marks and sent_s >= clip.speech_end_s:
            marks["speech_end"] = time.monotonic() - (sent_s - clip.speech_end_s)
        await asyncio.sleep(max(0.0, start + sent_s - time.monotonic()))
        if time.monotonic() - start > 90:
            return


async def avatar_turn(ws: Any, clip: Clip, turn: Turn) -> None:
    done, marks = asyncio.Event(), {}
    sender = asyncio.create_task(stream_clip(ws, clip, done, marks))
    first_audio = None
    try:
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 60))
            kind = event["type"]
            if kind == "audio_response":
                first_audio = first_audio or time.monotonic()
                turn.reply_audio_s += len(event["data"]) * 3 / 4 / 2 / event["sample_rate"]
            elif kind == "transcript" and event.get("final"):
                turn.transcript = event["text"]
            elif kind == "error":
                raise RuntimeError(f"{event['code']}: {event['message']}")
            elif kind == "turn_end":
                m = event.get("metrics") or {}
                turn.reply = event.get("text")
                ep = m.get("endpointing_ms")
                turn.stages = {
                    "endpoint_ms": ep,
                    "stt_done_ms": (ep or 0) + m["stt_ms"] if m.get("stt_ms") is not None else None,
                    "llm_first_ms": m.get("llm_first_token_ms"),
                    "tts_first_ms": m.get("tts_first_audio_ms"),
                    "server_v2v_ms": m.get("voice_to_voice_ms"),
                }
                break
        # Listen to the reply as a person would (silence keeps flowing), then the next question.
        played = (first_audio or time.monotonic()) + turn.reply_audio_s + 0.5
        await asyncio.sleep(max(0.0, played - time.monotonic()))
    finally:
        done.set()
        await sender
    if first_audio is None:
        raise RuntimeError("no reply audio")
    turn.v2v_ms = round((first_audio - marks["speech_end"]) * 1000, 1)


def read_events(events: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The complete JSON lines the bot appended since ``offset``, and the new offset."""
    with events.open("rb") as f:
        f.seek(offset)
        data = f.read()
    complete = data[: data.rfind(b"\n") + 1]
    rows = [json.loads(line) for line in complete.splitlines() if line.strip()]
    return rows, offset + len(complete)


async def pipecat_turn(ws: Any, clip: Clip, turn: Turn, events: Path, offset: int) -> int:
    """Binary audio back. The reply is over once the LLM has finished (the bot's ``llm_end``
    event) and no voiced audio came for 1.5 s: a gap alone is not enough, since Pipecat speaks
    sentence by sentence while the LLM is still writing."""
    done, marks = asyncio.Event(), {}
    sender = asyncio.create_task(stream_clip(ws, clip, done, marks))
    first_audio = last_voiced = None
    rows: list[dict[str, Any]] = []
    llm_done = False
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if llm_done and last_voiced is not None and time.monotonic() - last_voiced > 1.5:
                break
            try:
                data = await asyncio.wait_for(ws.recv(), 0.1)
            except TimeoutError:
                data = None
            if isinstance(data, bytes) and data.strip(b"\x00"):
                first_audio = first_audio or time.monotonic()
                last_voiced = time.monotonic()
                turn.reply_audio_s += len(data) / 2 / 22_050
            if first_audio is not None and not llm_done:
                new, offset = read_events(events, offset)
                rows += new
                llm_done = any(r["ev"] == "llm_end" and r["t"] >= marks["start"] for r in rows)
        played = (first_audio or time.monotonic()) + turn.reply_audio_s + 0.5
        await asyncio.sleep(max(0.0, played - time.monotonic()))
    finally:
        done.set()
        await sender
    if first_audio is None:
        raise RuntimeError("no reply audio")
    if not llm_done:
        raise RuntimeError("the LLM did not finish within 60 s")
    end = marks["speech_end"]
    turn.v2v_ms = round((first_audio - end) * 1000, 1)
    # Stage times from the bot's probes (the same monotonic clock on Linux).
    new, offset = read_events(events, offset)
    rows = [r for r in rows + new if r["t"] >= marks["start"]]

    def first(ev: str, after: float) -> dict[str, Any] | None:
        return next((r for r in rows if r["ev"] == ev and r["t"] >= after), None)

    turn_end = first("turn_end", marks["start"])
    cut = turn_end["t"] if turn_end else float("inf")
    verdicts = [
        r
        for r in rows
        if r["t"] <= cut
        and (r["ev"] == "smart_turn_timeout" or (r["ev"] == "smart_turn" and r["complete"]))
    ]
    vad_stops = [r for r in rows if r["ev"] == "vad_stop" and r["t"] <= cut]
    texts = [r for r in rows if r["ev"] == "transcript" and r["t"] <= cut]
    llm = first("llm_first_text", cut) if turn_end else None
    tts = first("tts_first_audio", llm["t"]) if llm else None
    turn.transcript = " ".join(r["text"].strip() for r in texts) or None
    turn.reply = "".join(
        r["text"] for r in rows if r["ev"] in ("llm_first_text", "llm_text") and r["t"] >= cut
    )

    def ms(row: dict[str, Any] | None) -> float | None:
        return round((row["t"] - end) * 1000, 1) if row else None

    turn.stages = {
        "endpoint_ms": ms(vad_stops[-1] if vad_stops else None),
        "stt_done_ms": ms(texts[-1] if texts else None),
        "smart_turn_ms": ms(verdicts[-1] if verdicts else None),
        "turn_end_ms": ms(turn_end),
        "llm_first_ms": ms(llm),
        "tts_first_ms": ms(tts),
    }
    return offset


# --- the pause set -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PauseClip:
    voice: str
    text: str  # "|" marks the 700 ms pause
    pcm: bytes  # lead silence, first half, the pause, the rest
    rest_at_s: float  # where the words after the pause start
    end_s: float  # end of the rest (end of the question)


@dataclass
class PauseResult:
    system: str
    voice: str
    text: str
    turns: int = 0  # user turns the system ended (AVATAR: final transcripts)
    turn_ends_s: list[float] = field(default_factory=list)  # from the clip's start
    kept_whole: bool = False
    cut_in: bool = False  # split: a turn ended inside the question (not kept whole)
    ended_at_pause: bool = False  # a turn ended before the words after the pause began
    v2v_ms: float | None = None  # end of the question to the first reply audio (kept whole)
    transcripts: list[str] = field(default_factory=list)
    reply: str | None = None
    smart_turn: list[dict[str, Any]] = field(default_factory=list)  # Pipecat's verdicts
    error: str | None = None


def make_pause_clips(limit: int | None, zh_dir: Path | None) -> list[PauseClip]:
    """The hesitation set of ``avatar bench latency --hesitation`` (avatar.bench.hesitation): each
    question spoken whole by Piper joe (without its noise) and espeak-ng, cut after its middle
    word by faster-whisper's word times; then the Mandarin recordings of ``zh_dir``. Built in
    this process, then unloaded."""
    from avatar.bench import hesitation as hes
    from avatar.bench.hesitation_run import LEAD_S
    from avatar.bench.voices import VOICES, QuestionVoices
    from avatar.engines.hub import EngineHub
    from avatar.settings import load_settings

    wanted = [(v, t, "en") for v in VOICES for t in hes.PAUSED_QUESTIONS]
    wanted += [(name, t, "zh") for name, t in hes.MANDARIN] if zh_dir else []
    wanted = wanted[:limit] if limit is not None else wanted
    hub = EngineHub(load_settings())
    voices = QuestionVoices(hub)
    try:
        whisper = hes.whisper_for_words(hub)

        async def build() -> list[hes.PausedClip]:
            out = []
            for voice, text, language in wanted:
                if language == "zh":
                    audio = hes.read_wav((zh_dir or Path()) / voice)
                    out.append(hes.split(whisper, "human-zh", text, audio, "zh"))
                else:
                    audio = await voices.speak(voice, text.replace(" |", ""))
                    out.append(hes.split(whisper, voice, text, audio, "en"))
            return out

        paused = asyncio.run(build())
    finally:
        voices.close()
        hub.close()
    clips = []
    for c in paused:
        lead = bytes(int(LEAD_S * hes.RATE) * 2)
        head = lead + c.first.to_s16le() + bytes(int(hes.PAUSE_S * hes.RATE) * 2)
        pcm = head + c.rest.to_s16le()
        clips.append(PauseClip(c.voice, c.text, pcm, len(head) / 32_000, len(pcm) / 32_000))
    return clips


async def pause_clip(
    ws: Any, clip: PauseClip, result: PauseResult, events: Path | None, offset: int
) -> int:
    """Stream ``clip`` in real time (20 ms frames, then silence) and collect what the system did
    until its reply has played out. AVATAR (``events`` None): JSON events on the socket; a user
    turn is a final transcript, as in avatar.bench.hesitation_run. Pipecat: binary audio on the
    socket and the bot's events; a user turn is a UserStoppedSpeakingFrame (deduplicated by id).

    Kept whole: exactly one user turn, ended after the words that follow the pause had started
    arriving. A (false) cut-in: the question was split, a turn ended inside it: at the pause, or
    on the first half's transcript with the rest made a second turn."""
    from avatar.bench.hesitation_run import LEAD_S, TAIL_S

    done, marks = asyncio.Event(), {}
    pcm_clip = Clip("pause", clip.text, clip.voice, clip.pcm, clip.end_s, False)
    sender = asyncio.create_task(stream_clip(ws, pcm_clip, done, marks))
    audio: list[tuple[float, float]] = []  # (time, seconds of reply audio)
    ends: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    avatar_ends: list[float] = []
    reply_done = False
    last_voiced = None
    start = time.monotonic()
    try:
        while True:
            now = time.monotonic() - start
            if ends and reply_done:
                played = (audio[0][0] + sum(d for _, d in audio)) if audio else 0.0
                quiet = events is None or last_voiced is None or now - last_voiced > 1.5
                if (
                    quiet
                    and now > max(ends.values()) + 0.5
                    and now > max(played, clip.end_s) + TAIL_S
                ):
                    break
            if not ends and now > clip.end_s + 20:
                break  # no turn at all: neither kept whole nor cut in
            if now > clip.end_s + 60:
                raise RuntimeError("no reply within 60 s")
            try:
                data = await asyncio.wait_for(ws.recv(), 0.1)
            except TimeoutError:
                data = None
            t = time.monotonic() - start
            if events is None and isinstance(data, str):
                event = json.loads(data)
                if event["type"] == "transcript" and event.get("final"):
                    ends[f"final{len(ends)}"] = t
                    result.transcripts.append(event["text"])
                elif event["type"] == "turn_end":  # the reply is written (or dropped)
                    avatar_ends.append(t)
                    result.reply = event.get("text")
                elif event["type"] == "audio_response":
                    audio.append((t, len(event["data"]) * 3 / 8 / event["sample_rate"]))
                elif event["type"] == "error":
                    raise RuntimeError(f"{event['code']}: {event['message']}")
                reply_done = bool(ends) and any(x >= max(ends.values()) for x in avatar_ends)
            elif events is not None:
                if isinstance(data, bytes) and data.strip(b"\x00"):
                    audio.append((t, len(data) / 2 / 22_050))
                    last_voiced = t
                new, offset = read_events(events, offset)
                rows += [r for r in new if r["t"] >= start]
                for r in rows:  # a turn ended in the lead silence is the previous clip's
                    if r["ev"] == "turn_end" and r["t"] - start > LEAD_S:
                        ends.setdefault(str(r["id"]), r["t"] - start)
                # Replied: the LLM wrote text after the last turn end, then finished (an
                # interrupted reply also ends with llm_end, so text must come first).
                latest = start + max(ends.values(), default=float("inf"))
                text_at = next(
                    (r["t"] for r in rows if r["ev"] == "llm_first_text" and r["t"] >= latest),
                    None,
                )
                # Speech after the last turn end is a turn still open (it ends by smart-turn,
                # its 3 s timeout or Pipecat's 5 s one): wait for it too. Seen at the first
                # probe (the later ones lag while the LLM and TTS are busy).
                still_open = any(
                    r["at"] == "stt" and r["ev"] in ("vad_start", "transcript") and r["t"] > latest
                    for r in rows
                )
                reply_done = (
                    not still_open
                    and text_at is not None
                    and any(r["ev"] == "llm_end" and r["t"] >= text_at for r in rows)
                )
    finally:
        done.set()
        await sender
    times = sorted(ends.values())
    result.turns = len(times)
    result.turn_ends_s = [round(x, 3) for x in times]
    result.kept_whole = len(times) == 1 and times[0] > clip.rest_at_s
    result.cut_in = bool(times) and not result.kept_whole
    result.ended_at_pause = any(x < clip.rest_at_s for x in times)
    if result.kept_whole and audio:
        result.v2v_ms = round((audio[0][0] - clip.end_s) * 1000, 1)
    if events is not None:
        result.transcripts = [r["text"] for r in rows if r["ev"] == "transcript"]
        result.reply = "".join(r["text"] for r in rows if r["ev"] in ("llm_first_text", "llm_text"))
        result.smart_turn = [
            {k: v for k, v in {**r, "t": round(r["t"] - start, 3)}.items() if k not in ("at",)}
            for r in rows
            if r["ev"].startswith("smart_turn")
        ]
    return offset


async def run_pause_set(
    name: str,
    port: int,
    ws: Any,
    clips: list[PauseClip],
    events: Path,
    offset: int,
    task: Any,
    progress: Progress,
) -> tuple[list[PauseResult], int]:
    """Every question on its own: AVATAR in a fresh session each (as `avatar bench latency
    --hesitation`), Pipecat (one client per bot process) on its socket with its context emptied."""
    results = []
    for clip in clips:
        result = PauseResult(name, clip.voice, clip.text)
        try:
            if name.startswith("avatar"):
                async with websockets.connect(
                    f"ws://127.0.0.1:{port}/ws/chat",
                    max_size=1 << 22,
                    additional_headers={"Authorization": f"Bearer {TOKEN}"},
                ) as avatar_ws:
                    await avatar_ws.recv()  # session_started
                    await pause_clip(avatar_ws, clip, result, None, 0)
            else:
                await ws.send("reset")
                offset = await pause_clip(ws, clip, result, events, offset)
        except Exception as exc:  # a failed clip is reported, not fatal
            result.error = f"{type(exc).__name__}: {exc}"
            console.print(f"[red]{name} pause {clip.text!r}: {result.error}")
        results.append(result)
        progress.advance(task)
    return results, offset


def summarize_pauses(results: list[PauseResult]) -> dict[str, Any]:
    by_voice: dict[str, dict[str, int]] = {}
    for r in results:
        v = by_voice.setdefault(r.voice, {"clips": 0, "kept_whole": 0, "cut_ins": 0})
        v["clips"] += 1
        v["kept_whole"] += r.kept_whole
        v["cut_ins"] += r.cut_in
    v2v = [r.v2v_ms for r in results if r.v2v_ms is not None]
    return {
        "clips": len(results),
        "kept_whole": sum(r.kept_whole for r in results),
        "cut_ins": sum(r.cut_in for r in results),
        "ended_at_pause": sum(r.ended_at_pause for r in results),
        "no_turn": sum(r.turns == 0 and r.error is None for r in results),
        "failed": sum(r.error is not None for r in results),
        "by_voice": by_voice,
        "v2v_ms_kept_whole": {
            "p50": round(statistics.median(v2v), 1),
            "p95": round(percentile(v2v, 0.95), 1),
            "n": len(v2v),
        }
        if v2v
        else {},
        "cut_in_questions": [f"{r.voice}: {r.text}" for r in results if r.cut_in],
        "per_clip": [asdict(r) for r in results],
    }


# --- the systems ---------------------------------------------------------------------------------


def start_system(
    name: str, port: int, llm_url: str, paths: dict[str, Path], events: Path, tmp: Path
) -> subprocess.Popen[bytes]:
    from avatar.settings import Settings

    log = (tmp / f"{name}.log").open("wb")
    if name == "avatar-default":
        # As `./run.sh serve` starts it: only the token, the data folder and the port are set;
        # embedded llama.cpp in process, text end of turn, speculative replies, language detected.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_")}
        env |= {"AVATAR_API_TOKEN": TOKEN, "AVATAR_DATA_DIR": str(tmp / f"data-{name}")}
        cmd = [str(ROOT / ".venv" / "bin" / "avatar"), "serve", "--port", str(port)]
        return subprocess.Popen(cmd, env=env, cwd=tmp, stdout=log, stderr=log)
    if name.startswith("avatar"):
        env = {
            **os.environ,
            "AVATAR_API_TOKEN": TOKEN,
            "AVATAR_DATA_DIR": str(tmp / f"data-{name}"),
            "AVATAR_PIPELINE": name.removeprefix("avatar-"),
            "AVATAR_LLM__ENGINE": "openai",
            "AVATAR_LLM__BASE_URL": llm_url,
            "AVATAR_LLM__MODEL": LLM_ALIAS,
            "AVATAR_STT__LANGUAGE": "en",
            "AVATAR_TTS__MODE": "fast",
            # No voice profiles here and Pipecat has no speaker encoder: don't preload VoiceFilter.
            "AVATAR_SPEAKER__ENGINE": "",
            "AVATAR_LOG_LEVEL": "warning",
        }
        cmd = [str(ROOT / ".venv" / "bin" / "avatar"), "serve", "--port", str(port)]
        return subprocess.Popen(cmd, env=env, cwd=tmp, stdout=log, stderr=log)
    s = Settings()
    # pipecat: turn end matched to AVATAR's 0.5 s; pipecat-early-stt: Whisper at the 0.2 s VAD
    # stop, turn end 0.3 s later; pipecat-smart-turn: Whisper at the 0.2 s VAD stop, turn end
    # when the local smart-turn v3 model says complete (Pipecat's default stop strategy).
    vad_stop, turn_timeout = (0.5, 0.0) if name == "pipecat" else (0.2, 0.3)
    turn = "smart" if name == "pipecat-smart-turn" else "timeout"
    cmd = [
        str(PIPECAT_PY),
        str(BENCH / "pipecat_bot.py"),
        "--port",
        str(port),
        "--whisper",
        str(paths["whisper-base"]),
        "--piper",
        str(paths["piper-joe"]),
        "--llm-url",
        llm_url,
        "--llm-model",
        LLM_ALIAS,
        "--system-prompt",
        s.llm.system_prompt,
        "--temperature",
        str(s.llm.temperature),
        "--max-tokens",
        str(s.llm.max_tokens),
        "--threads",
        str(s.stt.threads),
        "--vad-threshold",
        str(s.vad.threshold),
        "--vad-start",
        str(s.vad.min_speech_ms / 1000),
        "--vad-stop",
        str(vad_stop),
        "--turn",
        turn,
        "--turn-timeout",
        str(turn_timeout),
        "--events",
        str(events),
    ]
    return subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=log)


async def run_system(
    name: str,
    clips: list[Clip],
    turns: int,
    llm_proc: psutil.Process,
    llm_url: str,
    paths: dict[str, Path],
    tmp: Path,
    progress: Progress,
    pause_clips: list[PauseClip],
) -> dict[str, Any]:
    port = free_port()
    events = tmp / f"{name}.events.jsonl"
    events.touch()
    t0 = time.monotonic()
    proc = start_system(name, port, llm_url, paths, events, tmp)
    ps = psutil.Process(proc.pid)
    results: list[Turn] = []
    pauses: list[PauseResult] = []
    try:
        wait_port(port, proc)
        ready_s = time.monotonic() - t0
        task = progress.add_task(name, total=turns)
        avatar = name.startswith("avatar")
        url = f"ws://127.0.0.1:{port}" + ("/ws/chat" if avatar else "")
        headers = {"Authorization": f"Bearer {TOKEN}"} if avatar else {}
        async with websockets.connect(url, max_size=1 << 22, additional_headers=headers) as ws:
            if avatar:
                await ws.recv()  # session_started
                if name != "avatar-default":  # as shipped: the language is detected
                    await ws.send(json.dumps({"type": "config", "language": "en"}))
                    await ws.recv()  # config
            offset = 0
            warm = [c for c in clips if c.warmup]
            measured = [c for c in clips if not c.warmup]
            plan = warm + [measured[n % len(measured)] for n in range(turns)]
            cpu_at_start = llm_at_start = 0.0
            for n, clip in enumerate(plan):
                turn = Turn(name, clip.file, clip.text)
                cpu0, llm0 = cpu_seconds(ps), cpu_seconds(llm_proc)
                if n == len(warm):
                    cpu_at_start, llm_at_start = cpu0, llm0
                try:
                    if avatar:
                        await avatar_turn(ws, clip, turn)
                    else:
                        offset = await pipecat_turn(ws, clip, turn, events, offset)
                except Exception as exc:  # a failed turn is reported, not fatal
                    turn.error = f"{type(exc).__name__}: {exc}"
                turn.cpu_s = round(cpu_seconds(ps) - cpu0, 3)
                turn.llm_cpu_s = round(cpu_seconds(llm_proc) - llm0, 3)
                if n >= len(warm):
                    results.append(turn)
                    progress.advance(task)
                    if turn.error:
                        console.print(f"[red]{name} {clip.file}: {turn.error}")
            total_cpu = cpu_seconds(ps) - cpu_at_start
            total_llm = cpu_seconds(llm_proc) - llm_at_start
            peak = peak_rss_mb(proc.pid)  # the measured turns only, as before the pause set
            if pause_clips:
                pause_task = progress.add_task(f"{name} pause set", total=len(pause_clips))
                pauses, offset = await run_pause_set(
                    name, port, ws, pause_clips, events, offset, pause_task, progress
                )
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    ok = [t for t in results if t.v2v_ms is not None]
    return {
        "system": name,
        "startup_s": round(ready_s, 2),
        "peak_rss_mb": round(peak, 1),
        "cpu_s_per_turn": round(total_cpu / max(1, len(results)), 3),
        "llm_server_cpu_s_per_turn": round(total_llm / max(1, len(results)), 3),
        "turns": len(results),
        "failed_turns": len(results) - len(ok),
        "summary": summarize(ok),
        "per_turn": [asdict(t) for t in results],
        **({"pause_set": summarize_pauses(pauses)} if pause_clips else {}),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize(turns: list[Turn]) -> dict[str, dict[str, float]]:
    series: dict[str, list[float]] = {"v2v_ms": [t.v2v_ms for t in turns if t.v2v_ms is not None]}
    for key in (*STAGES, "smart_turn_ms", "turn_end_ms", "server_v2v_ms"):
        values = [t.stages[key] for t in turns if t.stages.get(key) is not None]
        if values:
            series[key] = values  # type: ignore[assignment]
    series["cpu_s"] = [t.cpu_s for t in turns]
    series["reply_audio_s"] = [t.reply_audio_s for t in turns]
    return {
        k: {
            "p50": round(statistics.median(v), 1 if k.endswith("ms") else 3),
            "p95": round(percentile(v, 0.95), 1 if k.endswith("ms") else 3),
            "mean": round(statistics.fmean(v), 1 if k.endswith("ms") else 3),
            "n": len(v),
        }
        for k, v in series.items()
        if v
    }


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["system"] for r in runs]
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(11, 4.5 + 0.45 * len(runs)))
    data = [[t["v2v_ms"] for t in r["per_turn"] if t["v2v_ms"] is not None] for r in runs]
    ax.boxplot(data, tick_labels=names, showfliers=True)
    for i, values in enumerate(data, start=1):
        ax.scatter([i] * len(values), values, alpha=0.45, s=14)
    ax.set_ylabel("voice-to-voice, ms (client-measured)")
    ax.set_title("Voice-to-voice per turn")
    ax.grid(axis="y", alpha=0.3)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    # Stage medians, cumulative from the end of speech.
    labels = {
        "endpoint_ms": "endpoint",
        "stt_done_ms": "transcript",
        "llm_first_ms": "LLM first text",
        "tts_first_ms": "TTS first audio",
        "v2v_ms": "client hears audio",
    }
    colors = ["#8ecae6", "#219ebc", "#ffb703", "#fb8500", "#023047"]
    legend: set[str] = set()  # each stage once, from the first run that has it
    for y, run in enumerate(runs):
        prev = 0.0
        for (key, label), color in zip(labels.items(), colors, strict=True):
            value = run["summary"].get(key, {}).get("p50")
            if value is None:
                continue
            bx.barh(y, value - prev, left=prev, color=color, label=None if key in legend else label)
            legend.add(key)
            prev = value
    pauses = [r.get("pause_set") for r in runs]
    bx.set_yticks(
        range(len(runs)),
        [
            f"{n}\npauses: {p['kept_whole']}/{p['clips']} whole, {p['cut_ins']} cut in" if p else n
            for n, p in zip(names, pauses, strict=True)
        ],
        **({"fontsize": 8} if any(pauses) else {}),
    )
    bx.invert_yaxis()
    bx.set_xlabel("ms after the end of speech (p50 of each stage boundary)")
    bx.set_title("Where the time goes (medians)")
    bx.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    bx.grid(axis="x", alpha=0.3)
    fig.suptitle("AVATAR vs Pipecat, same models, 2-core CPU")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine() -> dict[str, Any]:
    def version(py: Path, pkg: str) -> str:
        out = subprocess.run(
            [str(py), "-c", f"import importlib.metadata as m; print(m.version('{pkg}'))"],
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() or "?"

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    return {
        "avatar_commit": git("rev-parse", "--short", "HEAD").strip(),
        "avatar_tree_dirty": bool(git("status", "--porcelain", "--untracked-files=no").strip()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
        "pipecat-ai": version(PIPECAT_PY, "pipecat-ai"),
        "llama-cpp-python": version(Path(sys.executable), "llama-cpp-python"),
        "faster-whisper (avatar)": version(Path(sys.executable), "faster-whisper"),
        "faster-whisper (pipecat)": version(PIPECAT_PY, "faster-whisper"),
        "piper-tts": version(PIPECAT_PY, "piper-tts"),
        "onnxruntime (pipecat)": version(PIPECAT_PY, "onnxruntime"),
    }


async def run_all(
    systems: list[str],
    clips: list[Clip],
    turns: int,
    llm_pid: int,
    llm_url: str,
    paths: dict[str, Path],
    tmp: Path,
    pause_clips: list[PauseClip],
) -> list[dict[str, Any]]:
    runs = []
    llm_ps = psutil.Process(llm_pid)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        for name in systems:
            runs.append(
                await run_system(
                    name, clips, turns, llm_ps, llm_url, paths, tmp, progress, pause_clips
                )
            )
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description="AVATAR vs Pipecat voice-to-voice benchmark")
    p.add_argument("--turns", type=int, default=20)
    p.add_argument("--systems", default="avatar-streaming,avatar-sequential,pipecat")
    p.add_argument(
        "--pause-set",
        action="store_true",
        help="also stream the hesitation clips (a 700 ms pause after a middle word) through"
        " each system and count the questions kept whole and the false cut-ins",
    )
    p.add_argument(
        "--pause-limit", type=int, default=None, help="only the first N pause clips (smoke runs)"
    )
    p.add_argument(
        "--zh-dir",
        type=Path,
        default=ROOT.parent / "shared" / "audio" / "zh",
        help="Mandarin recordings added to the pause set when the folder exists",
    )
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--plot", type=Path, default=None)
    p.add_argument(
        "--plot-from",
        type=Path,
        nargs="+",
        default=None,
        help="no run: draw --plot from these JSON reports (passes numbered in the labels)",
    )
    args = p.parse_args()
    if args.plot_from:
        if not args.plot:
            p.error("--plot-from needs --plot")
        reports = []
        for f in args.plot_from:  # a report may carry a second pass under "repeat"
            report = json.loads(f.read_text(encoding="utf-8"))
            reports += [report, *([report["repeat"]] if "repeat" in report else [])]
        runs = [
            {**run, "system": f"{run['system']} ({n})" if len(reports) > 1 else run["system"]}
            for n, report in enumerate(reports, start=1)
            for run in sorted(report["runs"], key=lambda r: SYSTEMS.index(r["system"]))
        ]
        plot(runs, args.plot)
        return
    systems = [s for s in args.systems.split(",") if s]
    for s in systems:
        if s not in SYSTEMS:
            p.error(f"unknown system {s!r}; known: {', '.join(SYSTEMS)}")
    clips = load_clips()
    paths = model_paths()
    tmp = Path(tempfile.mkdtemp(prefix="avatar-peers-"))
    console.print(f"logs in {tmp}")
    pause_clips: list[PauseClip] = []
    if args.pause_set:
        zh_dir = args.zh_dir if args.zh_dir.is_dir() else None
        with console.status("building the pause set (Piper, espeak-ng, Whisper word times)"):
            pause_clips = make_pause_clips(args.pause_limit, zh_dir)
        for n, c in enumerate(pause_clips, start=1):  # the measured inputs, for listening
            with wave.open(str(tmp / f"pause-{n:02d}.wav"), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(16_000)
                w.writeframes(c.pcm)
        console.print(f"pause set: {len(pause_clips)} clips (WAVs in {tmp})")
    llm_port = free_port()
    llm_log = (tmp / "llm_server.log").open("wb")
    llm_cmd = [
        sys.executable,
        str(BENCH / "llm_server.py"),
        "--model",
        str(paths[LLM_ALIAS]),
        "--model_alias",
        LLM_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(llm_port),
        "--n_ctx",
        "4096",
        "--n_threads",
        "2",
        "--n_threads_batch",
        "2",
        "--n_gpu_layers",
        "0",
    ]
    llm = subprocess.Popen(llm_cmd, stdout=llm_log, stderr=llm_log)
    try:
        wait_port(llm_port, llm)
        llm_url = f"http://127.0.0.1:{llm_port}/v1"
        httpx.get(f"{llm_url}/models", timeout=30).raise_for_status()
        runs = asyncio.run(
            run_all(systems, clips, args.turns, llm.pid, llm_url, paths, tmp, pause_clips)
        )
        llm_peak = peak_rss_mb(llm.pid)
    finally:
        llm.terminate()
        llm.wait(15)
    table = Table(title="voice-to-voice (ms) and cost per turn")
    pause_cols = ("kept whole", "cut-ins") if pause_clips else ()
    for col in (
        "system",
        "v2v p50",
        "v2v p95",
        *STAGES,
        "CPU s/turn",
        "LLM CPU s/turn",
        "peak MB",
        *pause_cols,
    ):
        table.add_column(col)
    for r in runs:
        s = r["summary"]
        ps = r.get("pause_set")
        table.add_row(
            r["system"],
            str(s.get("v2v_ms", {}).get("p50")),
            str(s.get("v2v_ms", {}).get("p95")),
            *(str(s.get(k, {}).get("p50")) for k in STAGES),
            str(r["cpu_s_per_turn"]),
            str(r["llm_server_cpu_s_per_turn"]),
            str(r["peak_rss_mb"]),
            *((f"{ps['kept_whole']}/{ps['clips']}", str(ps["cut_ins"])) if ps else ()),
        )
    console.print(table)
    for r in runs:
        if ps := r.get("pause_set"):
            cut = "; ".join(ps["cut_in_questions"]) or "none"
            console.print(
                f"{r['system']}: {ps['kept_whole']} of {ps['clips']} paused questions kept whole,"
                f" {ps['cut_ins']} split by a false cut-in ({ps['ended_at_pause']} ended at the"
                f" pause itself), no turn {ps['no_turn']}, failed {ps['failed']}; split: {cut}"
            )
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "llm_server": {"command": " ".join(llm_cmd[1:]), "peak_rss_mb": round(llm_peak, 1)},
        "runs": runs,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if args.plot:
        plot(runs, args.plot)


if __name__ == "__main__":
    main()
