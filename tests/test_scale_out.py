"""Scale-out: two real API processes sharing Postgres, Redis and one audio folder.

Three processes are started: the fake OpenAI-compatible chat server (the remote LLM engine) and
two ``avatar serve`` processes, A and B, with the same database, Redis, data folder and token.
What one process does must be visible, and limited, through the other: history and its audio,
rate-limit budgets, the voice-session cap, voice profiles. The example reverse proxies
(examples/Caddyfile, examples/nginx.conf) are run in front of both when caddy / nginx are
installed, and SharedSessionSlots is tested on its own (races, a killed holder, Redis down).

Postgres: a fresh database ``avatar_scale_<hex>`` on 127.0.0.1:5432 (``AVATAR_TEST_POSTGRES_DSN``),
dropped at the end. Redis: db 14 on 127.0.0.1:6379 (``AVATAR_TEST_SCALE_REDIS_URL``); keys under
``avatar`` there are removed before and after. When either server is unreachable the tests skip,
unless ``AVATAR_REQUIRE_POSTGRES=1`` / ``AVATAR_REQUIRE_REDIS=1`` make that a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import httpx
import pytest
import websockets
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url

from avatar.api.ws.shared_slots import LocalSessionSlots, SharedSessionSlots, session_slots
from avatar.settings import load_settings
from avatar.testing.processes import closed_port
from conftest import MODEL_CACHE, TEST_TOKEN, free_port
from wsclient import ChatClient

pytestmark = pytest.mark.slow

ADMIN_DSN = os.environ.get(
    "AVATAR_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("AVATAR_TEST_SCALE_REDIS_URL", "redis://127.0.0.1:6379/14")
MAX_SESSIONS = 2
FAKE_REPLY = "Hello! I am a fake model."  # avatar.testing.fake_openai's DEFAULT_TOKENS
SENTENCES = (
    "The quick brown fox jumps over the lazy dog. We walked to the market on a sunny morning."
)


def unavailable(reason: str, require_env: str) -> NoReturn:
    if os.environ.get(require_env) == "1":
        pytest.fail(f"{reason} and {require_env}=1")
    pytest.skip(reason)


async def redis_or_skip() -> Redis:
    redis = Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:
        await redis.aclose()
        unavailable(f"Redis not reachable at {REDIS_URL} ({exc})", "AVATAR_REQUIRE_REDIS")
    return redis


async def forget_avatar_keys(redis: Redis) -> None:
    """Drop the rate-limit counters and session leases a previous run may have left."""
    async for key in redis.scan_iter(match="*avatar*", count=500):
        await redis.delete(key)


# --- the processes ---------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def start(name: str, argv: list[str], env: dict[str, str], workdir: Path, port: int) -> Process:
    """Run ``argv`` (listening on ``port``) with its output in a log file."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    return Process(name, popen, port, log)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def wait_listening(process: Process, limit_s: float = 120.0) -> None:
    """Wait until the port accepts; uvicorn binds only once the app's startup (migrations) is
    done."""
    deadline = time.monotonic() + limit_s
    while True:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited:\n{process.tail()}")
        try:
            socket.create_connection(("127.0.0.1", process.port), timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{process.name} did not start:\n{process.tail()}") from None
            time.sleep(0.2)


def clean_env() -> dict[str, str]:
    """This environment without AVATAR_* variables, so a developer's settings do not leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_")}


@dataclass
class Cluster:
    a: Process
    b: Process
    fake: Process
    data_dir: Path
    database: str

    def client(self, process: Process) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=process.url, headers={"Authorization": f"Bearer {TEST_TOKEN}"}, timeout=120
        )


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    redis = await redis_or_skip()
    try:
        admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        await redis.aclose()
        where = make_url(ADMIN_DSN).render_as_string(hide_password=True)
        unavailable(f"PostgreSQL not reachable at {where} ({exc})", "AVATAR_REQUIRE_POSTGRES")
    name = f"avatar_scale_{secrets.token_hex(6)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    processes: list[Process] = []
    try:
        await forget_avatar_keys(redis)
        workdir = tmp_path_factory.mktemp("scale")
        data_dir = workdir / "shared-data"  # the shared audio folder: NFS, SMB or a volume
        env = cluster_env(name, data_dir, port := free_port())
        fake = python("-m", "avatar.testing.fake_openai", "--port", str(port), "--mode", "ok")
        processes.append(start("fake-llm", [*fake, "--token-interval", "0.01"], env, workdir, port))
        for label in ("api-a", "api-b"):
            serve = python("-m", "avatar.cli.main", "serve", "--port", str(port := free_port()))
            processes.append(start(label, [*serve, "--no-preload"], env, workdir, port))
        for process in processes:
            await asyncio.to_thread(wait_listening, process)
        yield Cluster(processes[1], processes[2], processes[0], data_dir, name)
    finally:
        for process in processes:
            await asyncio.to_thread(process.stop)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        await forget_avatar_keys(redis)
        await redis.aclose()


def cluster_env(database: str, data_dir: Path, fake_port: int) -> dict[str, str]:
    """What every API process of the cluster shares (as a systemd EnvironmentFile would)."""
    url = make_url(ADMIN_DSN).set(drivername="postgresql+asyncpg", database=database)
    return clean_env() | {
        "AVATAR_DATA_DIR": str(data_dir),
        "AVATAR_DATABASE_URL": url.render_as_string(hide_password=False),
        "AVATAR_REDIS_URL": REDIS_URL,
        "AVATAR_API_TOKEN": TEST_TOKEN,
        "AVATAR_MAX_SESSIONS": str(MAX_SESSIONS),
        "AVATAR_RATE_LIMITS__SYSTEM": "5/minute",
        "AVATAR_MODELS__CACHE_DIR": str(MODEL_CACHE),
        "AVATAR_LLM__ENGINE": "openai",
        "AVATAR_LLM__BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
        "AVATAR_LLM__MODEL": "fake-model",
        "AVATAR_LOG_LEVEL": "warning",
        "AVATAR_SERVER__TRUSTED_PROXIES": '["127.0.0.1"]',  # the example proxy runs here
    }


def ws_connect(process: Process, session_id: str | None = None) -> Any:
    query = f"?session_id={session_id}" if session_id else ""
    return websockets.connect(
        f"ws://127.0.0.1:{process.port}/ws/chat{query}",
        additional_headers={"Authorization": f"Bearer {TEST_TOKEN}"},
        max_size=1 << 22,
    )


async def poll(check: Any, limit_s: float = 30.0, every_s: float = 0.5) -> Any:
    async with asyncio.timeout(limit_s):
        while not (result := await check()):  # noqa: ASYNC110 - polls another process
            await asyncio.sleep(every_s)
        return result


# --- (a) history and its audio -----------------------------------------------------------------


async def typed_turn(process: Process, session_id: str, text: str) -> dict[str, Any]:
    async with ws_connect(process, session_id) as ws:
        chat = ChatClient(ws)
        await chat.until(lambda e: e["type"] == "session_started")
        await chat.send_json({"type": "text", "text": text})
        end = await chat.until(lambda e: e["type"] == "turn_end")
    assert "".join(e["token"] for e in chat.of("llm_token")) == FAKE_REPLY  # the remote LLM
    assert chat.of("audio_response") and end["text"] == FAKE_REPLY
    return end


async def stored_turns(client: httpx.AsyncClient, session_id: str, count: int) -> Any:
    """The session's turns once ``count`` are stored (a turn is stored just after turn_end)."""

    async def stored() -> list[dict[str, Any]] | None:
        response = await client.get(f"/api/conversations/{session_id}")
        turns = response.json()["turns"] if response.status_code == 200 else []
        return turns if len(turns) >= count else None

    return await poll(stored)


async def test_a_turn_on_a_is_history_with_audio_on_b(cluster: Cluster) -> None:
    session_id = f"scale-{uuid.uuid4().hex[:12]}"
    await typed_turn(cluster.a, session_id, "Say hello.")
    async with httpx.AsyncClient(base_url=cluster.fake.url, timeout=5) as fake:
        fake_seen = (await fake.get("/_fake/state")).json()
    assert any(r["model"] == "fake-model" for r in fake_seen["requests"])

    async with cluster.client(cluster.b) as b:
        (turn,) = await stored_turns(b, session_id, 1)
        listed = (await b.get("/api/conversations/sessions", params={"page_size": 100})).json()
        assert session_id in [s["id"] for s in listed["items"]]
        assert turn["user_text"] == "Say hello." and turn["assistant_text"] == FAKE_REPLY
        assert turn["assistant_audio_url"] and turn["assistant_audio_s"] > 0
        audio = await b.get(turn["assistant_audio_url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert audio.content[:4] == b"RIFF" and len(audio.content) > 2_000
    # B serves the file A wrote: it is in the one audio folder both processes use.
    stored_files = [p for p in (cluster.data_dir / "audio").rglob("*.wav") if p.is_file()]
    assert any(p.read_bytes() == audio.content for p in stored_files)


async def test_a_client_that_reconnects_elsewhere_continues_its_session(cluster: Cluster) -> None:
    """No sticky routing: the second turn of a session may land on the other process."""
    session_id = f"scale-{uuid.uuid4().hex[:12]}"
    await typed_turn(cluster.a, session_id, "First question.")
    await typed_turn(cluster.b, session_id, "Second question.")
    async with cluster.client(cluster.a) as a:
        turns = await stored_turns(a, session_id, 2)
    assert [t["user_text"] for t in turns] == ["First question.", "Second question."]
    assert [t["index"] for t in turns] == [1, 2]


# --- (b) one rate-limit budget ----------------------------------------------------------------


async def test_rate_limits_are_one_budget_across_processes(cluster: Cluster) -> None:
    """GET /api/system/models/status allows 5 a minute per client: 3 on A and 2 on B use it up."""
    async with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
        for client in (a, a, a, b, b):
            assert (await client.get("/api/system/models/status")).status_code == 200
        for client in (b, a):
            refused = await client.get("/api/system/models/status")
            assert refused.status_code == 429
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.json()["code"] == "rate_limited"
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # Another route keeps its own budget: the limit is per route, not per process.
        assert (await b.get("/api/system/info")).status_code == 200


# --- (c) one voice-session cap ----------------------------------------------------------------


async def opened(process: Process, stack: list[Any]) -> Any:
    """A session that was admitted (its first event is session_started)."""
    ws = await ws_connect(process).__aenter__()
    stack.append(ws)
    first = await asyncio.wait_for(ws.recv(), 30)
    assert '"session_started"' in first
    return ws


async def refused_code(process: Process) -> int | None:
    async with ws_connect(process) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 30)
    return info.value.rcvd.code if info.value.rcvd else None


async def test_session_cap_holds_across_processes(cluster: Cluster) -> None:
    """AVATAR_MAX_SESSIONS=2 for the cluster: one session on A and one on B fill it."""
    stack: list[Any] = []
    try:
        first_on_a = await opened(cluster.a, stack)
        await opened(cluster.b, stack)
        assert await refused_code(cluster.a) == 1013
        assert await refused_code(cluster.b) == 1013
        await first_on_a.close()  # A gives its slot back; B may now take it

        async def admitted_on_b() -> bool:
            async with ws_connect(cluster.b) as ws:
                try:
                    return '"session_started"' in await asyncio.wait_for(ws.recv(), 30)
                except websockets.ConnectionClosed:
                    return False

        assert await poll(admitted_on_b, limit_s=10, every_s=0.2)
    finally:
        for ws in stack:
            await ws.close()


# --- (d) voice profiles ----------------------------------------------------------------------


async def test_a_voice_profile_made_on_a_is_served_by_b(cluster: Cluster) -> None:
    async with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
        speech = await a.post(
            "/v1/audio/speech",
            json={"model": "tts-1", "input": SENTENCES, "voice": "alloy", "response_format": "wav"},
        )
        assert speech.status_code == 200
        name = f"scale-{uuid.uuid4().hex[:8]}"
        created = await a.post(
            "/api/voice-profiles",
            data={"name": name, "reference_text": SENTENCES},
            files={"audio_file": ("voice.wav", speech.content, "audio/wav")},
        )
        assert created.status_code == 201, created.text
        profile = created.json()

        listed = (await b.get("/api/voice-profiles", params={"page_size": 200})).json()
        assert [p["id"] for p in listed["items"] if p["name"] == name] == [profile["id"]]
        wav = await b.get(f"/api/voice-profiles/{profile['id']}/audio")
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF"

        assert (await b.delete(f"/api/voice-profiles/{profile['id']}")).status_code == 204
        gone = await a.get(f"/api/voice-profiles/{profile['id']}")
        assert gone.status_code == 404 and gone.json()["code"] == "not_found"


# --- the example reverse proxies: examples/Caddyfile, examples/nginx.conf ----------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CLIENT_ADDRESS = "127.0.0.2"  # another loopback address: the proxy must forward it


def need(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        pytest.skip(f"{binary} is not installed (apt-get install {binary})")
    return found


def caddy_front(cluster: Cluster, workdir: Path, port: int) -> Process:
    """examples/Caddyfile as shipped; its {$VARIABLES} point it at this cluster."""
    upstreams = f"127.0.0.1:{cluster.a.port} 127.0.0.1:{cluster.b.port}"
    env = clean_env() | {
        "HOME": str(workdir),
        "XDG_DATA_HOME": str(workdir / "data"),
        "XDG_CONFIG_HOME": str(workdir / "config"),
        "AVATAR_SITE": "127.0.0.1",
        "AVATAR_UPSTREAMS": upstreams,
        "AVATAR_PROXY_HTTPS_PORT": str(port),
        "AVATAR_PROXY_HTTP_PORT": str(free_port()),
        "AVATAR_PROXY_ADMIN": f"127.0.0.1:{free_port()}",
    }
    argv = [need("caddy"), "run", "--adapter", "caddyfile", "--config", str(EXAMPLES / "Caddyfile")]
    return start("caddy", argv, env, workdir, port)


def nginx_front(cluster: Cluster, workdir: Path, port: int) -> Process:
    """examples/nginx.conf with its "edit" lines (addresses, ports, certificate) filled in."""
    nginx, openssl = need("nginx"), need("openssl")
    cert, key = workdir / "avatar.crt", workdir / "avatar.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    site = (EXAMPLES / "nginx.conf").read_text()
    servers = "".join(
        f"    server 127.0.0.1:{p.port} max_fails=3 fail_timeout=10s;\n"
        for p in (cluster.a, cluster.b)
    )
    site = re.sub(r"(    server 10\.0\.0\.\d+:\d+ .*;\n)+", lambda _: servers, site)
    site = site.replace("listen 80;", f"listen 127.0.0.1:{free_port()};")
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    site = site.replace("/etc/nginx/tls/avatar.crt", str(cert))
    site = site.replace("/etc/nginx/tls/avatar.key", str(key))
    (workdir / "avatar.conf").write_text(site)
    (workdir / "nginx.conf").write_text(
        f"daemon off;\npid {workdir}/nginx.pid;\nevents {{}}\nhttp {{\n  access_log off;\n"
        f"  client_body_temp_path {workdir}/body;\n  proxy_temp_path {workdir}/proxy;\n"
        f"  include {workdir}/avatar.conf;\n}}\n"
    )
    argv = [nginx, "-p", str(workdir), "-e", "stderr", "-c", str(workdir / "nginx.conf")]
    return start("nginx", argv, clean_env(), workdir, port)


def insecure_tls() -> ssl.SSLContext:
    """The test proxies use a throw-away certificate (Caddy's own CA, or self-signed)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


@pytest.mark.parametrize("front", [caddy_front, nginx_front], ids=["caddy", "nginx"])
async def test_the_example_proxy_carries_rest_and_websockets(
    cluster: Cluster, front: Any, tmp_path: Path
) -> None:
    """TLS in front of both processes: REST, the client's address, and /ws/chat with a browser
    Origin (which only passes when the proxy keeps the Host header)."""
    proxy = front(cluster, tmp_path, free_port())
    origin = f"https://127.0.0.1:{proxy.port}"
    auth = {"Authorization": f"Bearer {TEST_TOKEN}"}
    try:
        await asyncio.to_thread(wait_listening, proxy, 30)
        transport = httpx.AsyncHTTPTransport(local_address=CLIENT_ADDRESS, verify=insecure_tls())
        async with httpx.AsyncClient(
            base_url=origin, transport=transport, headers=auth, timeout=30
        ) as client:

            async def served() -> bool:  # Caddy issues its certificate just after it starts
                with contextlib.suppress(httpx.TransportError):
                    return (await client.get("/openapi.json")).status_code == 200
                return False

            await poll(served, limit_s=30, every_s=0.3)
            assert (await client.get("/api/system/info")).status_code == 200
        redis = await redis_or_skip()
        seen = [key async for key in redis.scan_iter(match=f"*{CLIENT_ADDRESS}*")]
        await redis.aclose()
        assert seen, "the API did not see the client's own address (X-Forwarded-For)"

        session_id = f"proxy-{uuid.uuid4().hex[:12]}"
        async with websockets.connect(
            f"wss://127.0.0.1:{proxy.port}/ws/chat?session_id={session_id}",
            additional_headers=auth | {"Origin": origin},
            ssl=insecure_tls(),
        ) as ws:
            chat = ChatClient(ws)
            await chat.until(lambda e: e["type"] == "session_started")
            await chat.send_json({"type": "text", "text": "Through the proxy."})
            end = await chat.until(lambda e: e["type"] == "turn_end")
        assert end["text"] == FAKE_REPLY and chat.of("audio_response")

        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(
                f"wss://127.0.0.1:{proxy.port}/ws/chat",
                additional_headers=auth | {"Origin": "https://evil.example"},
                ssl=insecure_tls(),
            )
        assert refused.value.response.status_code == 403
    finally:
        proxy.stop()
        assert proxy.popen.returncode is not None


# --- SharedSessionSlots on its own ------------------------------------------------------------


@pytest.fixture
async def slots_prefix() -> AsyncIterator[str]:
    """A key prefix of its own, so these cases never see each other's leases."""
    redis = await redis_or_skip()
    prefix = f"avatar-test:{uuid.uuid4().hex[:8]}"
    yield prefix
    async for key in redis.scan_iter(match=f"{{{prefix}}}*"):
        await redis.delete(key)
    await redis.aclose()


HOLDER = """
import asyncio, sys
from avatar.api.ws.shared_slots import LocalSessionSlots, SharedSessionSlots, session_slots
from avatar.settings import load_settings
from avatar.testing.processes import closed_port

async def main() -> None:
    slots = SharedSessionSlots(sys.argv[1], 2, 2, ttl_s=float(sys.argv[3]), prefix=sys.argv[2])
    for _ in range(2):
        assert await slots.acquire("holder") is None
    print("holding", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_slots_of_a_killed_process_come_free_after_the_ttl(slots_prefix: str) -> None:
    """A process holds both slots, renewing past its TTL; killed (no release), they expire."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, REDIS_URL, slots_prefix, "1.0", stdout=subprocess.PIPE
    )
    other = SharedSessionSlots(REDIS_URL, 2, 2, prefix=slots_prefix)
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 60) == b"holding\n"
        await asyncio.sleep(2.5)  # 2.5 TTLs: only renewal keeps the leases alive
        assert await other.acquire("me") == "the server holds its maximum of 2 voice sessions"
        holder.kill()
        await holder.wait()

        async def admitted() -> bool:
            return await other.acquire("me") is None

        assert await poll(admitted, limit_s=10, every_s=0.2)
        assert await other.count() == 1
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
        await other.aclose()


async def test_the_cap_holds_when_processes_race(slots_prefix: str) -> None:
    many = [SharedSessionSlots(REDIS_URL, 3, 10, prefix=slots_prefix) for _ in range(6)]
    try:
        verdicts = await asyncio.gather(
            *(s.acquire(f"client-{i % 4}") for i, s in enumerate(many * 2))
        )
        assert sum(v is None for v in verdicts) == 3
        assert {v for v in verdicts if v} == {"the server holds its maximum of 3 voice sessions"}
        assert await many[0].count() == 3
        assert sum(s.mine for s in many) == 3
    finally:
        for s in many:
            await s.aclose()
    fresh = SharedSessionSlots(REDIS_URL, 3, 10, prefix=slots_prefix)
    assert await fresh.count() == 0  # a clean shutdown gives every lease back at once
    await fresh.aclose()


async def test_the_per_client_cap_counts_every_process(slots_prefix: str) -> None:
    a = SharedSessionSlots(REDIS_URL, 10, 2, prefix=slots_prefix)
    b = SharedSessionSlots(REDIS_URL, 10, 2, prefix=slots_prefix)
    try:
        assert await a.acquire("10.0.0.7") is None
        assert await b.acquire("10.0.0.7") is None
        assert await a.acquire("10.0.0.7") == "this client already has 2 voice sessions open"
        assert await b.acquire("10.0.0.8") is None  # another client is not affected
        await a.release("10.0.0.7")
        assert await b.acquire("10.0.0.7") is None
        await a.release("10.0.0.9")  # nothing held for that client here: a no-op
        assert (a.mine, b.mine, await a.count()) == (0, 3, 3)
    finally:
        await a.aclose()
        await b.aclose()


async def test_without_redis_each_process_keeps_its_own_caps() -> None:
    """Redis down: admission degrades to this process's counts instead of refusing everyone."""
    down = SharedSessionSlots(f"redis://127.0.0.1:{closed_port()}/0", 2, 1, timeout_s=0.5)
    try:
        assert await down.acquire("c") is None
        assert await down.acquire("c") == "this client already has 1 voice sessions open"
        assert await down.acquire("d") is None
        assert await down.acquire("e") == "the server holds its maximum of 2 voice sessions"
        assert down.open == 2
        await down.release("c")
        assert down.open == 1 and await down.count() == 1
        assert await down.acquire("e") is None
    finally:
        await down.aclose()


def test_the_factory_picks_redis_only_when_configured(tmp_path: Path) -> None:
    shared = session_slots(load_settings(data_dir=tmp_path, redis_url=REDIS_URL, max_sessions=5))
    local = session_slots(load_settings(data_dir=tmp_path, max_sessions=5))
    assert isinstance(shared, SharedSessionSlots) and shared.total == 5
    assert isinstance(local, LocalSessionSlots) and local.slots.total == 5
    asyncio.run(shared.aclose())
