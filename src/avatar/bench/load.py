"""`avatar bench load`: many voice sessions streaming real audio in real time, plus REST traffic.

Each session holds one WebSocket for the whole run and asks question after question as
`avatar bench latency` does (:func:`avatar.bench.latency.one_turn`: real time, then silence while
the answer plays), reconnecting if dropped. A REST worker mixes reads, transcriptions and chat
completions at a fixed rate. The server runs in its own process (:func:`spawned_server`, which
runs this module), so the RSS sampled with psutil every second is the server's alone; a running
server can be measured instead, given its URL, token and pid.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from avatar.bench.latency import Clip, one_turn, percentile
from avatar.system.openmp import OPENMP_ENV
from avatar.testing.processes import closed_port, stop, wait_until_answering

TOKEN = "load-token-0123456789abcdef"

REST_MIX: list[tuple[str, str, float]] = [  # (method, path, weight)
    ("GET", "/health", 3),
    ("GET", "/api/conversations/sessions?page_size=5", 2),
    ("GET", "/api/voice-profiles?page_size=5", 2),
    ("GET", "/v1/models", 2),
    ("POST", "/v1/audio/transcriptions", 1),
    ("POST", "/v1/chat/completions", 1),
]


@dataclass(frozen=True)
class Target:
    """The server under load: where it listens, its token, and its process (for RSS)."""

    url: str  # http://host:port
    token: str
    pid: int | None

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")


@dataclass
class Sample:
    t: float  # seconds since the start
    kind: str  # "turn", or the REST route
    ms: float
    ok: bool
    error: str = ""
    # turns only, from the server's turn_end metrics: the endpointing silence as the server's VAD
    # counted it (audio time), and its own clock from the endpoint to the first audio sent
    endpointing_ms: float | None = None
    after_endpoint_ms: float | None = None


@dataclass
class LoadResult:
    """Everything measured in one run; :func:`summarize` turns it into figures."""

    sessions: int
    duration_s: float
    samples: list[Sample] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (t, MB) of the server
    # (t, MB) held by the LLM's prompt-state cache, read off /metrics every 30 s (real engines)
    prompt_cache: list[tuple[float, float]] = field(default_factory=list)
    held: list[tuple[float, int]] = field(default_factory=list)  # (t, open sessions)
    refused: int = 0  # sessions refused at the door (close 1013)
    rate_limited: int = 0  # REST 429s: not errors (limits are per client address)


class LoadRun:
    """One run: ``sessions`` voice clients and ``rest_rps`` REST requests a second."""

    def __init__(
        self, target: Target, clips: list[Clip], wav: bytes, sessions: int, rest_rps: float
    ) -> None:
        self.target, self.clips, self.wav = target, clips, wav
        self.sessions, self.rest_rps = sessions, rest_rps
        self.open = 0
        self.stop = asyncio.Event()
        self.t0 = 0.0
        self.result = LoadResult(sessions, 0.0)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def record(self, kind: str, ms: float, ok: bool, error: str = "", **turn: float | None) -> None:
        self.result.samples.append(
            Sample(round(self.now(), 3), kind, round(ms, 1), ok, error, **turn)
        )

    async def run(self, duration_s: float, tick: Callable[[LoadRun], None] | None = None) -> None:
        self.t0 = time.monotonic()
        self.result.duration_s = duration_s
        workers = [asyncio.create_task(self._session(n)) for n in range(self.sessions)]
        if self.rest_rps > 0:
            workers.append(asyncio.create_task(self._rest()))
        process = psutil.Process(self.target.pid) if self.target.pid else None
        next_cache_read = 0.0
        while self.now() < duration_s:
            if process is not None:
                self.result.rss.append((round(self.now(), 1), process.memory_info().rss / 2**20))
            if self.now() >= next_cache_read:
                next_cache_read = self.now() + 30.0
                await self._read_prompt_cache()
            self.result.held.append((round(self.now(), 1), self.open))
            if tick:
                tick(self)
            await asyncio.sleep(1.0)
        self.stop.set()
        # Let turns in flight finish (they end within a reply's length), then stop the rest.
        _, pending = await asyncio.wait(workers, timeout=60)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _read_prompt_cache(self) -> None:
        """Sample the prompt-state cache's size, so memory growth can be told from its filling."""
        try:
            async with httpx.AsyncClient(base_url=self.target.url, timeout=10) as client:
                response = await client.get(
                    "/metrics", headers={"Authorization": f"Bearer {self.target.token}"}
                )
        except httpx.HTTPError:
            return
        for line in response.text.splitlines():
            if line.startswith("avatar_llm_prompt_cache_bytes "):
                mb = float(line.split()[1]) / 2**20
                self.result.prompt_cache.append((round(self.now(), 1), round(mb, 1)))

    async def _session(self, n: int) -> None:
        import websockets

        turn = n
        while not self.stop.is_set():
            try:
                async with websockets.connect(
                    f"{self.target.ws_url}/ws/chat",
                    max_size=1 << 22,
                    additional_headers={"Authorization": f"Bearer {self.target.token}"},
                ) as ws:
                    await ws.recv()  # session_started
                    self.open += 1
                    try:
                        while not self.stop.is_set():
                            start = time.monotonic()
                            result = await one_turn(ws, self.clips[turn % len(self.clips)])
                            turn += 1
                            self.record("turn", result.v2v_ms, True, **_server_parts(result))
                            if time.monotonic() - start > 120:
                                raise TimeoutError("turn took over 120 s")
                    finally:
                        self.open -= 1
            except websockets.ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == 1013:
                    self.result.refused += 1
                self.record("turn", 0.0, False, f"closed: {exc}"[:200])
            except (OSError, RuntimeError, TimeoutError) as exc:
                self.record("turn", 0.0, False, repr(exc)[:400])
            if not self.stop.is_set():
                await asyncio.sleep(1.0)  # reconnect without hammering

    async def _rest(self) -> None:
        rng = random.Random(0)
        weights = [w for _, _, w in REST_MIX]
        async with httpx.AsyncClient(
            base_url=self.target.url,
            headers={"Authorization": f"Bearer {self.target.token}"},
            timeout=120,
        ) as client:
            pending: set[asyncio.Task[None]] = set()
            while not self.stop.is_set():
                method, path, _ = rng.choices(REST_MIX, weights)[0]
                task = asyncio.create_task(self._request(client, method, path))
                pending.add(task)
                task.add_done_callback(pending.discard)
                await asyncio.sleep(rng.expovariate(self.rest_rps))
            await asyncio.gather(*pending, return_exceptions=True)

    async def _request(self, client: httpx.AsyncClient, method: str, path: str) -> None:
        kwargs: dict[str, Any] = {}
        if path == "/v1/audio/transcriptions":
            kwargs = {"files": {"file": ("q.wav", self.wav, "audio/wav")}, "data": {"model": "m"}}
        elif path == "/v1/chat/completions":
            message = {"role": "user", "content": "Say hi."}
            kwargs = {"json": {"model": "m", "messages": [message], "max_tokens": 8}}
        route = f"{method} {path.split('?')[0]}"
        start = time.monotonic()
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.record(route, (time.monotonic() - start) * 1000, False, repr(exc)[:200])
            return
        ms = (time.monotonic() - start) * 1000
        if response.status_code == 429:
            self.result.rate_limited += 1
            return
        ok = response.status_code < 400
        self.record(route, ms, ok, "" if ok else f"{response.status_code} {response.text[:150]}")


def _server_parts(result: Any) -> dict[str, float | None]:
    metrics = result.metrics or {}
    endpointing = metrics.get("endpointing_ms")
    v2v = metrics.get("voice_to_voice_ms")
    after = None if v2v is None else float(v2v) - float(endpointing or 0.0)
    return {
        "endpointing_ms": None if endpointing is None else float(endpointing),
        "after_endpoint_ms": None if after is None else round(after, 1),
    }


# --- figures ---------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.5), 1),
        "p95": round(percentile(values, 0.95), 1),
        "p99": round(percentile(values, 0.99), 1),
    }


def server_added_ms(turns: list[Sample]) -> list[float]:
    """Per answered turn: client-measured voice-to-voice minus the endpointing silence.

    Voice-to-voice runs from the client sending the last voiced sample to the client receiving
    the first reply audio. Of that, the endpointing silence (the VAD hangover, as the server's
    VAD counted it in audio time) is the design's wait, not the server's doing; with the scripted
    engines (which answer at once: no STT, LLM or TTS delay) everything left is what the server
    adds: audio frames queued behind other sessions' work, VAD, the turn pipeline, JSON/base64
    framing, event-loop lag (the client's too: it shares the machine), and loopback transport.
    """
    return [s.ms - s.endpointing_ms for s in turns if s.ok and s.endpointing_ms is not None]


def growth_mb_per_min(rss: list[tuple[float, float]], warmup_s: float) -> float | None:
    """The slope of server RSS (MB a minute) after ``warmup_s``, by least squares."""
    points = [(t, mb) for t, mb in rss if t >= warmup_s]
    if len(points) < 3:
        return None
    t, mb = np.array(points).T
    return round(float(np.polyfit(t / 60, mb, 1)[0]), 2)


def summarize(result: LoadResult, warmup_s: float = 30.0) -> dict[str, Any]:
    """Sessions held, voice-to-voice and REST p50/p99 per route, error rate, server memory."""
    turns = [s for s in result.samples if s.kind == "turn"]
    rest = [s for s in result.samples if s.kind != "turn"]
    routes = sorted({s.kind for s in rest})
    errors = [s for s in result.samples if not s.ok]
    held = [n for t, n in result.held if t >= min(warmup_s, result.duration_s / 2)]
    rss = [mb for _, mb in result.rss]
    return {
        "sessions": result.sessions,
        "duration_s": result.duration_s,
        "sessions_held": {"min": min(held, default=0), "max": max(held, default=0)},
        "sessions_refused": result.refused,
        "voice_to_voice_ms": _stats([s.ms for s in turns if s.ok]),
        "endpointing_ms": _stats([s.endpointing_ms for s in turns if s.endpointing_ms is not None]),
        "server_added_ms": _stats(server_added_ms(turns)),
        "after_endpoint_server_clock_ms": _stats(
            [s.after_endpoint_ms for s in turns if s.after_endpoint_ms is not None]
        ),
        "rest_ms": _stats([s.ms for s in rest if s.ok]),
        "rest_routes_ms": {r: _stats([s.ms for s in rest if s.kind == r and s.ok]) for r in routes},
        "requests": len(result.samples),
        "errors": len(errors),
        "error_rate": round(len(errors) / len(result.samples), 4) if result.samples else 0.0,
        "first_errors": sorted({f"{s.kind}: {s.error}" for s in errors})[:5],
        "rate_limited": result.rate_limited,
        "server_rss_mb": {
            "start": round(rss[0], 1) if rss else None,
            "end": round(rss[-1], 1) if rss else None,
            "peak": round(max(rss), 1) if rss else None,
            "growth_mb_per_min": growth_mb_per_min(result.rss, warmup_s),
        },
    }


# --- a server of its own ---------------------------------------------------------------------


@contextmanager
def spawned_server(
    data_dir: Path,
    sessions: int,
    *,
    fake_engines: bool,
    rate_limits: bool = False,
    model_cache: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Target]:
    """Start ``python -m avatar.bench.load serve`` on a free loopback port; yields its Target.

    ``env`` adds environment variables for the server (``AVATAR_…`` settings).
    """
    port = closed_port()
    command = [sys.executable, "-m", "avatar.bench.load", "serve", str(port), str(data_dir)]
    command += [str(sessions), "fake" if fake_engines else "real", str(rate_limits).lower()]
    server_env = {**os.environ, **OPENMP_ENV, **(env or {})}
    if model_cache is not None:
        server_env["AVATAR_MODELS__CACHE_DIR"] = str(model_cache)
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "server.log").open("wb")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=server_env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(
            server,
            f"{url}/health",
            what="the load server",
            log_tail=lambda: (data_dir / "server.log").read_text(errors="replace")[-2000:],
            timeout_s=600,
            poll_s=0.5,
        )
        yield Target(url, TOKEN, server.pid)
    finally:
        stop(server, grace_s=30)
        log.close()


def _serve(port: int, data_dir: Path, sessions: int, fake: bool, rate_limits: bool) -> None:
    import uvicorn

    from avatar.api.app import create_app
    from avatar.engines.hub import EngineHub
    from avatar.settings import load_settings
    from avatar.testing.fakes import ScriptedChat, ScriptedStt, ToneTts

    settings = load_settings(
        data_dir=data_dir,
        api_token=TOKEN,
        max_sessions=sessions + 2,
        max_sessions_per_client=sessions + 2,
        server={"preload": not fake},
    )
    hub = EngineHub(settings)
    if fake:  # the real VAD still endpoints the real speech the clients send
        # Zero-time engines: every millisecond after the endpoint is the server's own.
        hub.override("stt", ScriptedStt("What is the capital of France?"))
        hub.override("llm", ScriptedChat("The capital of France is Paris.", interval_s=0.0))
        hub.override("tts.fast", ToneTts(ms_per_word=150))
    else:
        hub.preload()
    app = create_app(settings, hub)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws_max_size=1 << 20)
    )

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn's flag
            await asyncio.sleep(0.05)
        if not rate_limits:  # all load comes from one address: per-client limits would bite
            app.state.avatar.limits.enabled = False
        await task

    asyncio.run(main())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The server spawned_server() starts.")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("port", type=int)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("sessions", type=int)
    parser.add_argument("engines", choices=["fake", "real"])
    parser.add_argument("rate_limits", choices=["true", "false"])
    args = parser.parse_args()
    _serve(
        args.port, args.data_dir, args.sessions, args.engines == "fake", args.rate_limits == "true"
    )
