"""Crash-safety harness: the real server in a subprocess, real traffic, SIGKILL at random moments.

Each cycle starts ``avatar serve`` on the same data folder, checks what the previous crash left
(database integrity, rows against files, orphans), checks that every write the server
acknowledged is still there, then drives traffic (typed and spoken voice turns over /ws/chat,
voice-profile uploads and deletes, conversation deletes) and kills the server with SIGKILL: at
a random delay, during start-up, or the instant an acknowledgement arrives. Acknowledged means:
a ``turn_end`` event, a 201 for an upload, a 204 for a delete. Tests and
``scripts/crash_soak.py`` share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets
from sqlalchemy import select

from avatar.audio.encode import encode_wav
from avatar.audio.pcm import PcmAudio
from avatar.audio.resample import resample
from avatar.engines.hub import EngineHub
from avatar.services import speech
from avatar.services.integrity import check_integrity, repair
from avatar.storage import AudioStore, Database
from avatar.storage.tables import ConversationRow, TurnRow, VoiceProfileRow
from avatar.system.openmp import OPENMP_ENV
from avatar.testing.processes import closed_port

TOKEN = "crash-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROFILE_TEXT = (
    "The quick brown fox jumps over the lazy dog. We walked to the market on a sunny morning."
)
QUESTION_TEXT = "What is the capital of France?"
MOMENTS = ("startup", "ack", "random")
ACK_KINDS = ("turn", "upload", "delete")  # "ack" kills take these in turn


@dataclass(frozen=True, slots=True)
class SpeechClips:
    """Real TTS speech: a spoken question (16 kHz PCM) and a >= 4 s profile recording (WAV)."""

    question_pcm: bytes
    profile_wav: bytes


async def make_speech(hub: EngineHub) -> SpeechClips:
    """Synthesise the clips once with the real embedded TTS."""
    question = await speech.say(hub, QUESTION_TEXT, language="en")
    profile = await speech.say(hub, PROFILE_TEXT, language="en")
    pcm = resample(question, 16_000) if question.sample_rate != 16_000 else question
    pause = PcmAudio.silence(0.5, 16_000).to_s16le()
    pad = np.zeros(int(0.4 * profile.sample_rate), dtype=np.float32)
    padded = PcmAudio(np.concatenate([pad, profile.samples, pad]), profile.sample_rate)
    return SpeechClips(pause + pcm.to_s16le() + pause * 3, encode_wav(padded))


# --- processes -------------------------------------------------------------------------------


class Process:
    """A child process logging to a file, ready once its port accepts a TCP connection."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, cwd: Path) -> None:
        self.args, self.env, self.log, self.cwd = args, env, log, cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        self.port = closed_port()
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, *self.args, "--port", str(self.port)],
                env=self.env,
                cwd=self.cwd,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    async def ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not await self.accepting():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args[1]} exited {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.args[1]} did not start: {self.tail()}")
            await asyncio.sleep(0.05)

    async def accepting(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        return True

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit status."""
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def server_env(data_dir: Path, llm_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of ``avatar serve``: inherited minus AVATAR_*, plus cheap engines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_")}
    env.update(
        AVATAR_DATA_DIR=str(data_dir),
        AVATAR_API_TOKEN=TOKEN,
        AVATAR_LLM__ENGINE="openai",
        AVATAR_LLM__BASE_URL=llm_url,
        AVATAR_LLM__MODEL="fake-model",
        AVATAR_LOG_LEVEL="warning",
        **OPENMP_ENV,
    )
    env.update(extra or {})
    return env


def fake_llm(workdir: Path, token_interval_s: float = 0.05, mode: str = "ok") -> Process:
    module = ["-m", "avatar.testing.fake_openai", "--mode", mode]
    args = [*module, "--token-interval", str(token_interval_s)]
    return Process(args, dict(os.environ), workdir / "fake_llm.log", workdir)


class Stack:
    """The fake LLM process and ``avatar serve`` processes on one data folder.

    ``async with Stack(tmp) as stack: server = await stack.start()``; SQLite in
    ``<workdir>/data`` unless ``database_url`` is given.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        token_interval_s: float = 0.05,
        llm_mode: str = "ok",
        database_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir, self.data_dir = workdir, workdir / "data"
        self.llm = fake_llm(workdir, token_interval_s, llm_mode)
        self.database_url = database_url or f"sqlite+aiosqlite:///{self.data_dir / 'avatar.db'}"
        self.extra_env = {"AVATAR_DATABASE_URL": database_url} if database_url else {}
        self.extra_env.update(env or {})
        self.server: Process | None = None

    async def __aenter__(self) -> Stack:
        self.llm.start()
        await self.llm.ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()
        self.llm.stop()

    def spawn(self) -> Process:
        """Start ``avatar serve`` (without waiting for it)."""
        env = server_env(self.data_dir, f"{self.llm.url}/v1", self.extra_env)
        self.server = Process(
            ["-m", "avatar.cli.main", "serve", "--no-preload"],
            env,
            self.workdir / "server.log",
            self.workdir,
        )
        self.server.start()
        return self.server

    async def start(self) -> Process:
        server = self.spawn()
        await server.ready()
        return server

    async def kill(self) -> None:
        """SIGKILL the server and reap it."""
        if self.server is not None and self.server.proc is not None:
            self.server.signal(signal.SIGKILL)
            await asyncio.to_thread(self.server.proc.wait)

    def connect(self, session_id: str) -> Any:
        """A /ws/chat connection (``async with``) to the running server."""
        assert self.server is not None
        return websockets.connect(
            f"ws://127.0.0.1:{self.server.port}/ws/chat?session_id={session_id}",
            additional_headers=AUTH,
            max_size=1 << 22,
        )


# --- what the server acknowledged ------------------------------------------------------------


@dataclass
class Ledger:
    """Every acknowledged write, and the deletes whose outcome is unknown."""

    turns: Counter[tuple[str, str]] = field(default_factory=Counter)  # (session, user text)
    profiles: set[str] = field(default_factory=set)
    deleted_profiles: set[str] = field(default_factory=set)
    deleted_sessions: set[str] = field(default_factory=set)
    unsure: set[str] = field(default_factory=set)  # a delete was sent, no answer came
    closed_sessions: list[str] = field(default_factory=list)
    acks: int = 0
    acked: dict[str, asyncio.Event] = field(
        default_factory=lambda: {kind: asyncio.Event() for kind in ACK_KINDS}
    )

    def ack(self, kind: str) -> None:
        self.acks += 1
        self.acked[kind].set()

    async def missing(self, db: Database) -> list[str]:
        """Acknowledged writes the database lost, and acknowledged deletes it undid."""
        async with db.read() as s:
            rows = await s.execute(select(TurnRow.session_id, TurnRow.user_text))
            stored = Counter((sid, text) for sid, text in rows)
            profiles = set((await s.execute(select(VoiceProfileRow.id))).scalars())
            sessions = set((await s.execute(select(ConversationRow.id))).scalars())
        gone = self.deleted_sessions | self.unsure
        lost = [k for k, n in self.turns.items() if k[0] not in gone and stored[k] < n]
        problems = [f"acknowledged turn lost: session {sid} {text!r}" for sid, text in lost]
        kept = self.profiles - self.deleted_profiles - self.unsure
        problems += [f"acknowledged voice profile lost: {p}" for p in sorted(kept - profiles)]
        problems += [
            f"deleted voice profile is back: {p}" for p in self.deleted_profiles & profiles
        ]
        problems += [f"deleted session is back: {s}" for s in self.deleted_sessions & sessions]
        return problems


# --- traffic ---------------------------------------------------------------------------------


class Traffic:
    """Clients that keep writing until the server dies; they record what it acknowledged."""

    def __init__(self, stack: Stack, clips: SpeechClips, ledger: Ledger, rng: random.Random):
        self.stack, self.clips, self.ledger, self.rng = stack, clips, ledger, rng

    async def voice(self, spoken: bool) -> None:
        """Sessions of 1-3 turns each, typed or spoken, one after another."""
        while True:
            sid = f"crash-{uuid.uuid4().hex[:12]}"
            async with self.stack.connect(sid) as ws:
                await next_event(ws, "session_started")
                ended: set[str] = set()
                for _ in range(self.rng.randint(1, 3)):
                    await self._turn(ws, sid, spoken, ended)
            self.ledger.closed_sessions.append(sid)

    async def _turn(self, ws: Any, sid: str, spoken: bool, ended: set[str]) -> None:
        """One turn; its ``turn_end`` (matched by turn id) acknowledges it."""
        typed = None if spoken else f"crash probe {uuid.uuid4().hex[:8]}"
        if typed is None:
            step = 3_200  # 100 ms of 16 kHz s16le
            for i in range(0, len(self.clips.question_pcm), step):
                await ws.send(self.clips.question_pcm[i : i + step])
        else:
            await ws.send(json.dumps({"type": "text", "text": typed}))
        heard: dict[str, str] = {}
        with contextlib.suppress(TimeoutError):  # no turn (nothing heard): go on
            await self._until_turn_end(ws, sid, typed, heard, ended)

    async def _until_turn_end(
        self, ws: Any, sid: str, typed: str | None, heard: dict[str, str], ended: set[str]
    ) -> None:
        async with asyncio.timeout(30):
            while True:
                event = json.loads(await ws.recv())
                turn_id = event.get("turn_id")
                if event["type"] == "transcript" and event.get("final") and turn_id:
                    heard[turn_id] = event["text"]
                elif event["type"] == "turn_end" and turn_id not in ended:
                    ended.add(turn_id)
                    text = typed or heard.get(turn_id)
                    if text:
                        self.ledger.turns[(sid, text)] += 1
                        self.ledger.ack("turn")
                    return

    async def profiles(self) -> None:
        """Uploads, profile deletes and conversation deletes in a random mix."""
        assert self.stack.server is not None
        url = self.stack.server.url
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as c:
            roll = 0.0  # a delete first, when there is something to delete
            while True:
                live = sorted(self.ledger.profiles - self.ledger.deleted_profiles)
                if live and roll < 0.3:
                    await self._delete(c, f"/api/voice-profiles/{self.rng.choice(live)}")
                elif self.ledger.closed_sessions and roll < 0.45:
                    sid = self.ledger.closed_sessions.pop(0)
                    await self._delete(c, f"/api/conversations/{sid}")
                else:
                    await self._upload(c)
                roll = self.rng.random()

    async def _upload(self, client: httpx.AsyncClient) -> None:
        files = {"audio_file": ("voice.wav", self.clips.profile_wav, "audio/wav")}
        data = {"name": f"crash-{uuid.uuid4().hex[:10]}", "reference_text": PROFILE_TEXT}
        response = await client.post("/api/voice-profiles", files=files, data=data)
        if response.status_code == 201:
            self.ledger.profiles.add(response.json()["id"])
            self.ledger.ack("upload")
        elif response.status_code == 429:
            await asyncio.sleep(min(float(response.headers.get("Retry-After", 1)), 2.0))

    async def _delete(self, client: httpx.AsyncClient, path: str) -> None:
        target = path.rsplit("/", 1)[1]
        self.ledger.unsure.add(target)
        response = await client.delete(path)
        if response.status_code == 204:
            deleted = "voice-profiles" in path
            (self.ledger.deleted_profiles if deleted else self.ledger.deleted_sessions).add(target)
            self.ledger.unsure.discard(target)
            self.ledger.ack("delete")
        elif response.status_code == 429:
            self.ledger.unsure.discard(target)
            await asyncio.sleep(1.0)
        else:
            self.ledger.unsure.discard(target)


async def next_event(ws: Any, kind: str) -> dict[str, Any]:
    """The next event of type ``kind`` (others are skipped)."""
    async with asyncio.timeout(30):
        while True:
            event: dict[str, Any] = json.loads(await ws.recv())
            if event["type"] == kind:
                return event


# --- the soak --------------------------------------------------------------------------------


@dataclass
class Cycle:
    """One kill, and what the restart after it found (each problem reported once)."""

    index: int
    moment: str = ""
    delay_s: float = 0.0  # from ready (or spawn, for start-up kills) to the kill
    start_s: float = 0.0  # from spawn to accepting connections
    drain_s: float = 0.0  # from the kill until every client had stopped
    acks: int = 0
    found: list[str] = field(default_factory=list)  # orphans and temps after start-up
    removed: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class SoakReport:
    """Every cycle, the acknowledged writes, and the violations."""

    cycles: list[Cycle]
    ledger: Ledger
    wall_s: float

    @property
    def problems(self) -> list[str]:
        return [f"kill {c.index} ({c.moment}): {p}" for c in self.cycles for p in c.problems]

    def summary(self) -> str:
        moments = Counter(c.moment for c in self.cycles)
        left = [c for c in self.cycles if c.found]
        return "\n".join(
            [
                f"{len(self.cycles)} kills in {self.wall_s:.0f} s "
                f"({', '.join(f'{n} {m}' for m, n in sorted(moments.items()))})",
                f"acknowledged: {sum(self.ledger.turns.values())} turns, "
                f"{len(self.ledger.profiles)} profile uploads, "
                f"{len(self.ledger.deleted_profiles)} profile deletes, "
                f"{len(self.ledger.deleted_sessions)} conversation deletes",
                f"left after the server's own start-up: {sum(len(c.found) for c in left)} "
                f"orphan/temp files in {len(left)} restarts; "
                f"removed by repair: {sum(c.removed for c in self.cycles)}",
                f"violations: {len(self.problems)}",
                *[f"  {p}" for p in self.problems[:40]],
            ]
        )


class CrashHarness:
    """Runs ``kills`` cycles against one data folder (SQLite, or ``database_url``).

    The kill schedule (moments, delays) comes from ``seed`` alone; the traffic has its own
    random stream, so a slower machine changes what was written, not when the kills fall.
    """

    def __init__(
        self,
        workdir: Path,
        clips: SpeechClips,
        *,
        seed: int = 0,
        max_delay_s: float = 4.0,
        weights: tuple[float, float, float] = (0.1, 0.3, 0.6),  # startup, ack, random
        repair_after_start: bool = True,
        require_clean_start: bool = False,
        database_url: str | None = None,
    ) -> None:
        self.workdir, self.clips = workdir, clips
        self.require_clean_start = require_clean_start  # leftovers after start-up are a problem
        self.schedule, self.traffic_rng = random.Random(seed), random.Random(seed + 1)
        self.max_delay_s, self.weights = max_delay_s, weights
        self.repair_after_start = repair_after_start
        self.data_dir = workdir / "data"
        self.database_url = database_url or f"sqlite+aiosqlite:///{self.data_dir / 'avatar.db'}"
        self.ledger = Ledger()
        self._seen: set[str] = set()
        self._ack_kills = 0

    async def run(self, kills: int, progress: Callable[[Cycle], None] | None = None) -> SoakReport:
        started = time.monotonic()
        cycles: list[Cycle] = []
        reported = 0
        db = Database(self.database_url)
        try:
            async with Stack(self.workdir, database_url=self.database_url) as stack:
                for index in range(kills + 1):
                    moment = "startup" if index == 0 else self._pick() if index < kills else ""
                    stack.spawn()
                    if moment == "startup":
                        cycles.append(await self._kill_during_startup(stack, index))
                        continue
                    assert stack.server is not None
                    spawned = time.monotonic()
                    await stack.server.ready()
                    start_s = round(time.monotonic() - spawned, 3)
                    if cycles:
                        await self._verify(db, cycles[-1])
                    for cycle in cycles[reported:]:
                        if progress:
                            progress(cycle)
                    reported = len(cycles)
                    if moment:
                        cycles.append(await self._traffic_then_kill(stack, index, moment))
                        cycles[-1].start_s = start_s
        finally:
            await db.dispose()
        return SoakReport(cycles, self.ledger, time.monotonic() - started)

    def _pick(self) -> str:
        return self.schedule.choices(MOMENTS, self.weights)[0]

    async def _kill_during_startup(self, stack: Stack, index: int) -> Cycle:
        """SIGKILL at a random point of start-up (imports, migrations)."""
        cycle = Cycle(index, "startup", round(self.schedule.uniform(0.3, 3.0), 3))
        await asyncio.sleep(cycle.delay_s)
        assert stack.server is not None
        if await stack.server.accepting():
            cycle.moment = "idle"  # start-up was quicker: killed idle instead
        await stack.kill()
        return cycle

    async def _verify(self, db: Database, cycle: Cycle) -> None:
        """After start-up: integrity, leftovers, acknowledged data; then the repair step."""
        audio = AudioStore(self.data_dir / "audio")
        report = await check_integrity(db, audio, grace_s=0)
        cycle.found = [*report.orphans, *report.stale_temps]
        found = [p for p in report.problems() if not p.startswith(("orphan", "stale"))]
        if self.require_clean_start:
            found += [f"left after the server's start-up: {rel}" for rel in cycle.found]
        found += await self.ledger.missing(db)
        if self.repair_after_start and cycle.found:
            fixed = await repair(db, audio, grace_s=0)
            cycle.removed = len(fixed.removed)
            found += [f"after repair: {p}" for p in fixed.after.problems()]
            found += await self.ledger.missing(db)
        for problem in dict.fromkeys(found):
            if problem not in self._seen:
                self._seen.add(problem)
                cycle.problems.append(problem)

    async def _traffic_then_kill(self, stack: Stack, index: int, moment: str) -> Cycle:
        delay = self.schedule.uniform(0.2, self.max_delay_s)
        traffic = Traffic(stack, self.clips, self.ledger, self.traffic_rng)
        acks_before = self.ledger.acks
        kind = ACK_KINDS[self._ack_kills % len(ACK_KINDS)] if moment == "ack" else ""
        self._ack_kills += bool(kind)
        workers = [traffic.voice(spoken=False), traffic.profiles()]
        if kind != "upload":  # spoken turns share the STT with the upload analysis: slower
            workers.append(traffic.voice(spoken=True))
        tasks = [asyncio.create_task(worker) for worker in workers]
        started = time.monotonic()
        if kind:
            moment = f"ack:{kind}"
            acked = self.ledger.acked[kind]
            acked.clear()
            with contextlib.suppress(TimeoutError):  # none came: kill anyway
                await asyncio.wait_for(acked.wait(), 30.0)
        else:
            await asyncio.sleep(delay)
        await stack.kill()
        cycle = Cycle(index, moment, round(time.monotonic() - started, 3))
        # Let the clients read what arrived before the kill, then stop them.
        killed = time.monotonic()
        await asyncio.wait(tasks, timeout=3.0)
        cycle.drain_s = round(time.monotonic() - killed, 3)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        cycle.acks = self.ledger.acks - acks_before
        return cycle
