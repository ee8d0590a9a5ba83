"""Hostile input against the live server: audio bombs, polyglots, playlists, huge and deep bodies,
WebSocket abuse, slowloris, and the web-security defaults.

Each case checks the status (or close code) and problem+json code, that server memory stays
bounded (the server runs in this process: its RSS is this process's), and that /health still
answers afterwards. docs/RELIABILITY.md describes what is covered and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import struct
import threading
import time
import tracemalloc
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from fractions import Fraction
from typing import Any

import av
import httpx
import numpy as np
import psutil
import pytest
import websockets

from avatar.api.limits_middleware import BodyLimitMiddleware, HeaderDeadlineH11Protocol
from avatar.audio.encode import encode_flac, encode_opus, encode_wav
from avatar.audio.pcm import PcmAudio
from avatar.engines.hub import EngineHub
from avatar.services import speech
from avatar.settings import Settings
from avatar.testing.fakes import ScriptedChat, ToneTts
from conftest import LiveServer, live_app, scripted_settings
from fuzz.crashers import CRASHERS
from wsclient import ChatClient, connect

MiB = 1024 * 1024
PROBLEM = "application/problem+json"
PROFILES = "/api/voice-profiles"
TRANSCRIBE = "/v1/audio/transcriptions"
SENTENCES = "The quick brown fox jumps over the lazy dog. We walked to the market in the morning."


# --- helpers ---------------------------------------------------------------------------------


class PeakRss:
    """Samples this process's RSS every few ms while the block runs; ``growth_mb`` is the peak."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self.base = self.peak = self._proc.memory_info().rss

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / MiB


async def assert_healthy(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.get("/health")
    assert response.status_code == 200, response.text


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The error body of any route: problem+json, or under /v1 OpenAI's ``error`` object (its
    ``message`` read as ``detail``)."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    if set(body) == {"error"}:  # /v1: OpenAI's shape alone
        error = body["error"]
        body = {"status": status, "code": error["code"], "detail": error["message"], **error}
    assert body["status"] == status and body["code"] == code, body
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


async def upload(api: httpx.AsyncClient, path: str, data: bytes, name: str = "a.wav") -> Any:
    if path == PROFILES:
        fields = {"name": f"hostile-{uuid.uuid4().hex[:8]}", "reference_text": SENTENCES}
        return await api.post(path, data=fields, files={"audio_file": (name, data, "audio/wav")})
    return await api.post(
        path, data={"model": "whisper-1"}, files={"file": (name, data, "audio/wav")}
    )


async def profile_count(api: httpx.AsyncClient) -> int:
    listing = await api.get(PROFILES, params={"page_size": 1})
    assert listing.status_code == 200
    return int(listing.json()["total"])


async def raw_exchange(
    server: LiveServer, head: bytes, body: AsyncIterator[bytes] | None = None
) -> tuple[int, bytes, int]:
    """Send ``head`` then ``body`` over a bare socket while reading the answer concurrently.

    Returns (status, response body, body bytes the server took before answering or closing).
    Plain socket reads, since a reset after the answer must not hide it (asyncio streams
    drop buffered data once the transport fails).
    """
    loop = asyncio.get_running_loop()
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setblocking(False)
    sent = 0

    async def pump() -> None:
        nonlocal sent
        await loop.sock_sendall(sock, head)
        if body is not None:
            async for part in body:
                await loop.sock_sendall(sock, part)
                sent += len(part)

    async def read_all() -> bytes:
        data = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await loop.sock_recv(sock, 65536):
                data += chunk
        return data

    sender = asyncio.create_task(pump())
    try:
        # The server closes after answering, so the rest of the body is never taken.
        answer = await asyncio.wait_for(read_all(), 20)
    except TimeoutError:
        pytest.fail(f"no answer and close within 20 s; the server took {sent:,} body bytes")
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
        sock.close()
    head_part, _, content = answer.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 "), answer[:200]
    length = int(head_part.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    assert len(content) == length, answer[:400]
    return int(head_part.split(b" ", 2)[1]), content, sent


def head(server: LiveServer, method: str, path: str, extra: str) -> bytes:
    host = server.url.removeprefix("http://")
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {server.token}\r\n"
        f"{extra}\r\n"
    ).encode()


async def chunks(total: int, path: str, size: int = MiB) -> AsyncIterator[bytes]:
    """A chunked body of ``total`` bytes that parses as far as it goes (JSON or multipart)."""
    if path == TRANSCRIBE:
        part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        yield b"%x\r\n%s\r\n" % (len(part), part)
    block = b"%x\r\n%s\r\n" % (size, b"[" * size)
    for _ in range(total // size):
        yield block


# --- audio made to hurt ----------------------------------------------------------------------


def opus_bomb(hours: float) -> bytes:
    """Ogg Opus of ``hours`` of silence from one real 120 ms libopus packet, muxed over and over
    (as tests/test_audio_io.py builds it): under 2 MB that would decode to gigabytes."""
    out = io.BytesIO()
    with av.open(out, "w", format="ogg") as media:
        stream = media.add_stream("libopus", rate=48_000, layout="mono")
        stream.bit_rate = 6000
        stream.codec_context.options = {"frame_duration": "120"}
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 96_000), np.float32), format="flt", layout="mono"
        )
        frame.sample_rate, frame.pts = 48_000, 0
        packets = [*stream.encode(frame), *stream.encode(None)]
        template, duration = bytes(packets[-2]), packets[-2].duration
        assert duration == 5760
        for i in range(int(hours * 3600 * 48_000 / duration)):
            packet = av.Packet(template)
            packet.pts = packet.dts = i * duration
            packet.duration, packet.stream = duration, stream
            packet.time_base = Fraction(1, 48_000)
            media.mux(packet)
    return out.getvalue()


def forged_wav(*, rate: int | None = None, size: int | None = None) -> bytes:
    data = bytearray(encode_wav(PcmAudio.silence(1.0, 16_000)))
    assert data[36:40] == b"data"
    if rate is not None:
        struct.pack_into("<I", data, 24, rate)
    if size is not None:
        struct.pack_into("<I", data, 40, size)
    return bytes(data)


HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"


def polyglot(wav: bytes) -> bytes:
    """A valid WAV that is also a valid ZIP (holding an HTML page) and carries raw HTML."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("index.html", HTML)
    extra = HTML + archive.getvalue()
    extra += b"\0" * (len(extra) & 1)
    chunk = b"junk" + struct.pack("<I", len(extra)) + extra
    data = bytearray(wav + chunk)
    struct.pack_into("<I", data, 4, len(data) - 8)
    assert zipfile.ZipFile(io.BytesIO(bytes(data))).read("index.html") == HTML
    return bytes(data)


@pytest.fixture(scope="module")
def speech_wav(hub: EngineHub) -> bytes:
    """About 5 s of real speech from the real TTS, with pauses around it."""
    audio = asyncio.run(speech.say(hub, SENTENCES, language="en"))
    pad = PcmAudio.silence(0.4, audio.sample_rate)
    return encode_wav(pad.concat(audio).concat(pad))


# --- audio uploads ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [PROFILES, TRANSCRIBE])
async def test_decompression_bomb_is_413_with_bounded_memory(
    api: httpx.AsyncClient, live_server: LiveServer, path: str
) -> None:
    bomb = opus_bomb(hours=2)  # 2 h decoded: 1.38 GB of float32 at 48 kHz, 460 MB at 16 kHz
    assert len(bomb) < 2 * MiB
    before = await profile_count(api)
    tracemalloc.start()
    try:
        with PeakRss() as rss:
            response = await upload(api, path, bomb, "bomb.ogg")
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    body = problem(response, 413, "audio_too_large")
    assert "longer than" in body["detail"]
    assert traced_peak < 128 * MiB  # the cap (300 s at most) is ~20 MB of samples
    assert rss.growth_mb < 300, rss.growth_mb
    assert await profile_count(api) == before
    await assert_healthy(live_server)


@pytest.mark.parametrize("path", [PROFILES, TRANSCRIBE])
@pytest.mark.parametrize(
    ("forged", "status", "code"),
    [
        ({"rate": 4_000_000_000}, 413, "audio_too_large"),  # would size buffers by the rate
        ({"size": 2_000_000_000}, 422, "audio_invalid"),  # declares 2 GB in a 32 kB file
    ],
    ids=["rate", "size"],
)
async def test_forged_wav_headers_are_refused(
    api: httpx.AsyncClient, live_server: LiveServer, path: str, forged: dict, status: int, code: str
) -> None:
    with PeakRss() as rss:
        response = await upload(api, path, forged_wav(**forged))
    problem(response, status, code)
    assert rss.growth_mb < 100, rss.growth_mb
    await assert_healthy(live_server)


@pytest.mark.parametrize("path", [PROFILES, TRANSCRIBE])
async def test_wav_that_is_html_inside_is_corrupt(
    api: httpx.AsyncClient, live_server: LiveServer, path: str
) -> None:
    fake = b"RIFF\x40\x00\x00\x00WAVE" + HTML  # starts like WAV, holds no fmt/data chunks
    problem(await upload(api, path, fake), 422, "audio_invalid")
    await assert_healthy(live_server)


async def test_polyglot_is_never_served_back_or_echoed(
    api: httpx.AsyncClient, live_server: LiveServer, speech_wav: bytes
) -> None:
    """A WAV+ZIP+HTML polyglot decodes as the WAV it also is; only re-encoded audio is kept."""
    data = polyglot(speech_wav)
    created = await upload(api, PROFILES, data, "index.html")
    assert created.status_code == 201, created.text
    profile_id = created.json()["id"]
    try:
        stored = await api.get(f"{PROFILES}/{profile_id}/audio")
        assert stored.status_code == 200
        assert stored.headers["content-type"] == "audio/wav"
        assert stored.headers["x-content-type-options"] == "nosniff"
        assert b"<script" not in stored.content and b"PK\x03\x04" not in stored.content
        assert "index.html" not in created.text
    finally:
        await api.delete(f"{PROFILES}/{profile_id}")
    transcribed = await upload(api, TRANSCRIBE, data, "index.html")
    assert transcribed.status_code == 200 and "<" not in transcribed.json()["text"]


def _truncated(kind: str, wav: bytes) -> bytes:
    audio = PcmAudio.silence(2.0, 16_000)
    full = {"wav": wav, "flac": encode_flac(audio), "ogg-opus": encode_opus(audio)}[kind]
    return full[: len(full) * 2 // 3]


@pytest.mark.parametrize("path", [PROFILES, TRANSCRIBE])
@pytest.mark.parametrize("kind", ["wav", "flac", "ogg-opus"])
async def test_truncated_files_are_422(
    api: httpx.AsyncClient, live_server: LiveServer, speech_wav: bytes, path: str, kind: str
) -> None:
    before = await profile_count(api)
    problem(await upload(api, path, _truncated(kind, speech_wav)), 422, "audio_invalid")
    assert await profile_count(api) == before
    await assert_healthy(live_server)


@pytest.mark.parametrize("path", [PROFILES, TRANSCRIBE])
@pytest.mark.parametrize("name", list(CRASHERS))
async def test_fuzzer_findings_are_never_500(
    api: httpx.AsyncClient, live_server: LiveServer, path: str, name: str
) -> None:
    """Inputs tests/fuzz found (see tests/fuzz/crashers.py), uploaded through the API."""
    response = await upload(api, path, CRASHERS[name](), "a.webm")
    allowed = (415, 422) if path == PROFILES else (200, 415, 422)  # 200: decoded, tag ignored
    assert response.status_code in allowed, response.text
    await assert_healthy(live_server)


@pytest.fixture
async def canary() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A loopback listener a playlist points at: any connection means the server fetched it."""
    hits: list[bytes] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, hits


PLAYLISTS = {
    "m3u": "#EXTM3U\n#EXTINF:10,x\nhttp://127.0.0.1:{port}/a.wav\nfile:///etc/passwd\n",
    "pls": "[playlist]\nFile1=http://127.0.0.1:{port}/a.wav\nNumberOfEntries=1\nVersion=2\n",
    "hls": "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n"
    "http://127.0.0.1:{port}/seg0.ts\n#EXT-X-ENDLIST\n",
    "id3-hls": "ID3\x04\x00\x00\x00\x00\x00\x00#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1:{port}/x\n",
    "ffconcat": "ffconcat version 1.0\nfile 'http://127.0.0.1:{port}/a.wav'\n",
}


@pytest.mark.parametrize("path", [PROFILES, TRANSCRIBE])
@pytest.mark.parametrize("kind", list(PLAYLISTS))
async def test_playlists_are_415_and_never_fetched(
    api: httpx.AsyncClient, live_server: LiveServer, canary: Any, path: str, kind: str
) -> None:
    port, hits = canary
    data = PLAYLISTS[kind].format(port=port).encode()
    problem(await upload(api, path, data, f"list.{kind}"), 415, "audio_unsupported_format")
    await asyncio.sleep(0.2)
    assert hits == []
    await assert_healthy(live_server)


# --- huge and deep bodies --------------------------------------------------------------------


def test_the_app_caps_every_body(live_server: LiveServer) -> None:
    middleware = [m.cls for m in live_server.app.user_middleware]  # type: ignore[attr-defined]
    assert BodyLimitMiddleware in middleware, (
        "wire BodyLimitMiddleware in avatar.api.app.create_app (see docs/RELIABILITY.md)"
    )


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/api/conversations/x/export", "application/octet-stream"),  # a route with no own cap
        ("/v1/chat/completions", "application/json"),
        (TRANSCRIBE, "multipart/form-data; boundary=b"),
    ],
)
async def test_100_mb_declared_body_is_413_before_it_is_read(
    api: httpx.AsyncClient, live_server: LiveServer, path: str, kind: str
) -> None:
    length = 100 * MiB
    request = head(
        live_server, "POST", path, f"Content-Type: {kind}\r\nContent-Length: {length}\r\n"
    )

    async def body() -> AsyncIterator[bytes]:  # sent whole, as most clients do
        for _ in range(100):
            yield bytes(MiB)

    with PeakRss() as rss:
        status, content, sent = await raw_exchange(live_server, request, body())
    body = json.loads(content)
    code = body["error"]["code"] if path.startswith("/v1/") else body["code"]  # OpenAI's shape
    assert status == 413 and code == "payload_too_large"
    assert sent < 90 * MiB and rss.growth_mb < 64, (sent, rss.growth_mb)
    await assert_healthy(live_server)


@pytest.mark.parametrize(
    ("path", "kind", "status"),
    [
        ("/v1/chat/completions", "application/json", 413),  # read, counted, cut at 1 MiB
        (PROFILES + "/x", "application/json", 413),  # PUT is capped at 64 KiB by its route
        (TRANSCRIBE, "multipart/form-data; boundary=b", 413),  # cut at the 25 MiB upload cap
        ("/api/conversations/x/export", "application/octet-stream", 404),  # never read
    ],
)
async def test_100_mb_chunked_body_is_cut_off(
    api: httpx.AsyncClient, live_server: LiveServer, path: str, kind: str, status: int
) -> None:
    method = "PUT" if path.startswith(PROFILES) else "POST"
    request = head(
        live_server, method, path, f"Content-Type: {kind}\r\nTransfer-Encoding: chunked\r\n"
    )
    with PeakRss() as rss:
        got, content, sent = await raw_exchange(live_server, request, chunks(100 * MiB, path))
    assert got == status, content
    # The answer came, and the connection closed, long before the 100 MB were taken.
    assert sent < 90 * MiB and rss.growth_mb < 128, (sent, rss.growth_mb)
    await assert_healthy(live_server)


async def test_10_mb_json_is_413(api: httpx.AsyncClient, live_server: LiveServer) -> None:
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * (10 * MiB)}]}
    declared = await api.post("/v1/chat/completions", json=big)
    assert "1 MiB" in problem(declared, 413, "payload_too_large")["detail"]
    raw = json.dumps(big).encode()

    async def stream() -> AsyncIterator[bytes]:  # no Content-Length: httpx sends it chunked
        for i in range(0, len(raw), MiB):
            yield raw[i : i + MiB]

    chunked = await api.post(
        "/v1/chat/completions", content=stream(), headers={"Content-Type": "application/json"}
    )
    problem(chunked, 413, "payload_too_large")
    profile = await api.put(f"{PROFILES}/{'0' * 32}", json={"description": "x" * (10 * MiB)})
    problem(profile, 413, "payload_too_large")
    await assert_healthy(live_server)


@pytest.mark.parametrize("depth", [64, 100_000])  # inside the object: one level more
@pytest.mark.parametrize(
    ("method", "path"), [("PUT", f"{PROFILES}/{'0' * 32}"), ("POST", "/v1/chat/completions")]
)
async def test_deep_json_is_422(
    api: httpx.AsyncClient, live_server: LiveServer, method: str, path: str, depth: int
) -> None:
    body = '{"messages": ' + "[" * depth + "]" * depth + "}"
    response = await api.request(
        method, path, content=body, headers={"Content-Type": "application/json"}
    )
    assert f"{depth + 1} levels" in problem(response, 422, "json_too_deep")["detail"]
    await assert_healthy(live_server)


async def test_json_guard_is_not_quadratic(api: httpx.AsyncClient) -> None:
    """An unterminated string full of escaped quotes: a naive scan restarts at each quote."""
    body = b'{"messages": "' + b'\\"' * 400_000  # 800 kB, under the 1 MiB cap
    response = await api.post(
        "/v1/chat/completions",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=60,  # a quadratic scan of this body takes hours
    )
    assert response.status_code == 400, response.text  # /v1: invalid JSON is OpenAI's 400


async def test_brackets_inside_strings_are_not_nesting(api: httpx.AsyncClient) -> None:
    response = await api.put(f"{PROFILES}/{'0' * 32}", json={"description": "[{" * 1000})
    problem(response, 404, "not_found")  # reached the route: the guard let it through


# --- WebSocket -------------------------------------------------------------------------------


async def pong_after(client: ChatClient) -> None:
    await client.send_json({"type": "ping"})
    await client.until(lambda e: e["type"] == "pong", limit_s=60)


@pytest.mark.parametrize("frame", [bytes(MiB + 1), "x" * (MiB + 1)], ids=["binary", "text"])
async def test_ws_frame_over_1_mib_is_closed_with_1009(
    api: httpx.AsyncClient, live_server: LiveServer, frame: bytes | str
) -> None:
    async with connect(live_server) as ws:
        await ws.recv()  # session_started
        await ws.send(frame)
        with pytest.raises(websockets.ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), 30)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    async with connect(live_server) as ws:  # the server goes on
        client = ChatClient(ws)
        await client.until(lambda e: e["type"] == "session_started")
        await pong_after(client)
    await assert_healthy(live_server)


async def test_ws_message_over_the_text_cap_is_an_error_and_the_session_goes_on(
    api: httpx.AsyncClient, live_server: LiveServer
) -> None:
    async with connect(live_server) as ws:
        client = ChatClient(ws)
        await client.until(lambda e: e["type"] == "session_started")
        await ws.send(json.dumps({"type": "text", "text": "x" * 300_000}))
        error = await client.until(lambda e: e["type"] == "error")
        assert error["code"] == "message_too_large"
        await pong_after(client)


def flood_messages(n: int) -> list[bytes | str]:
    """``n`` small messages, a mix of valid and broken ones (none starts a turn)."""
    kinds: list[bytes | str] = [
        json.dumps({"type": "ping"}),
        "not json {",
        json.dumps({"type": "bogus"}),
        json.dumps([1, 2, 3]),
        bytes(2),  # one silent sample
        b"\x01",  # an odd byte count
        json.dumps({"type": "audio_chunk", "data": "!!not base64!!"}),
        json.dumps({"type": "config", "language": "<script>"}),
        json.dumps({"type": "playback", "turn_id": "nope", "played_ms": 5}),
        json.dumps({"type": "interrupt"}),
    ]
    return [kinds[i % len(kinds)] for i in range(n)]


async def test_ws_flood_of_10k_messages(api: httpx.AsyncClient, live_server: LiveServer) -> None:
    messages = flood_messages(10_000)
    pings = sum(1 for m in messages if m == json.dumps({"type": "ping"}))
    latencies: list[float] = []

    async def bystander(stop: asyncio.Event) -> None:
        async with connect(live_server) as ws:
            client = ChatClient(ws)
            await client.until(lambda e: e["type"] == "session_started")
            while not stop.is_set():
                t0 = time.monotonic()
                await pong_after(client)
                latencies.append(time.monotonic() - t0)
                await asyncio.sleep(0.05)

    async def flood_reading() -> None:
        async with connect(live_server) as ws:
            client = ChatClient(ws)
            await client.until(lambda e: e["type"] == "session_started")
            pongs = 0

            async def read() -> None:
                nonlocal pongs
                while pongs < pings + 1:
                    event = json.loads(await ws.recv())
                    pongs += event["type"] == "pong"

            reader = asyncio.create_task(read())
            for message in messages:
                await ws.send(message)
            await ws.send(json.dumps({"type": "ping"}))
            await asyncio.wait_for(reader, 120)  # every ping answered: the session still works

    async def flood_not_reading() -> int | None:
        """Floods without reading (the client's queue holds one frame): the server may drop
        the session as too slow (1008), but never stalls the others."""
        pongs = 0
        try:
            async with connect(live_server, max_queue=1) as ws:
                for message in messages:
                    await ws.send(message)
                await ws.send(json.dumps({"type": "ping"}))
                async with asyncio.timeout(120):
                    while pongs < pings + 1:
                        pongs += json.loads(await ws.recv())["type"] == "pong"
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else -1
        return None

    stop = asyncio.Event()
    with PeakRss() as rss:
        watcher = asyncio.create_task(bystander(stop))
        code = (await asyncio.gather(flood_reading(), flood_not_reading()))[1]
        stop.set()
        await asyncio.wait_for(watcher, 60)
    assert latencies, "the bystander session never got a pong"
    assert code in (None, 1008), code
    assert rss.growth_mb < 200, rss.growth_mb
    await assert_healthy(live_server)


@pytest.fixture(scope="module")
def scripted_server(
    tmp_path_factory: pytest.TempPathFactory, model_store: Any
) -> Iterator[LiveServer]:
    """Scripted engines (a quick reply each turn) and a database of its own."""
    from avatar.testing.fakes import ScriptedStt

    engines = {
        "stt": ScriptedStt("hello"),
        "llm": ScriptedChat("Hello there, friend.", interval_s=0.0),
        "tts.fast": ToneTts(ms_per_word=50),
    }
    settings = scripted_settings(tmp_path_factory.mktemp("scripted"))
    with live_app(settings, models=model_store, engines=engines) as server:
        yield server


TURNS = 300


async def test_ws_flood_of_turns(scripted_server: LiveServer) -> None:
    """Every typed message starts a turn (interrupting the last): costly, but it must neither
    stall other sessions nor grow memory without bound."""
    latencies: list[float] = []
    stop = asyncio.Event()

    async def bystander() -> None:
        async with connect(scripted_server, ping_interval=None) as ws:
            client = ChatClient(ws)
            await client.until(lambda e: e["type"] == "session_started")
            while not stop.is_set():
                t0 = time.monotonic()
                await pong_after(client)
                latencies.append(time.monotonic() - t0)
                await asyncio.sleep(0.1)

    watcher = asyncio.create_task(bystander())
    with PeakRss() as rss:
        async with connect(scripted_server, ping_interval=None) as ws:
            client = ChatClient(ws)
            await client.until(lambda e: e["type"] == "session_started")
            # Read while sending, as a client must (one that stops reading is dropped).
            reader = asyncio.create_task(
                client.until(
                    lambda _: len(client.of("turn_end")) == TURNS and bool(client.of("pong"))
                )
            )
            for i in range(TURNS):
                await ws.send(json.dumps({"type": "text", "text": f"Count to {i}."}))
            await ws.send(json.dumps({"type": "ping"}))
            await asyncio.wait_for(reader, 120)  # every turn ended, interrupted or answered
    stop.set()
    await asyncio.wait_for(watcher, 60)
    assert latencies and not client.of("error")
    assert len(client.of("interrupted")) >= TURNS // 2
    assert rss.growth_mb < 200, rss.growth_mb
    await assert_healthy(scripted_server)


# --- web security ----------------------------------------------------------------------------


def test_default_bind_is_loopback(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("AVATAR_SERVER__HOST", raising=False)
    assert Settings().server.host == "127.0.0.1"


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
async def test_no_cross_origin_access_is_granted(live_server: LiveServer, origin: str) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, headers=live_server.auth) as client:
        preflight = await client.options(
            "/v1/chat/completions",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        simple = await client.get("/v1/models", headers={"Origin": origin})
    for response in (preflight, simple):
        assert not any(h.startswith("access-control-") for h in response.headers), response.headers
    assert preflight.status_code in (400, 401, 403, 405)


SECRET = "boom in /home/secret/engine.py with password=hunter2"


class BrokenStt:
    """An engine that fails with a non-AVATAR error carrying things no client should see."""

    name, loaded = "broken", True

    def load(self) -> None: ...

    def unload(self) -> None: ...

    async def transcribe(self, audio: PcmAudio, **_options: str | None) -> Any:
        raise RuntimeError(SECRET)


class BrokenChat(ScriptedChat):
    async def stream_chat(self, messages: Any, options: Any) -> AsyncIterator[str]:
        raise RuntimeError(SECRET)
        yield ""  # pragma: no cover - makes this an async generator


class Deadline(HeaderDeadlineH11Protocol):
    header_timeout_s = 1.0


@pytest.fixture(scope="module")
def faulty_server(
    tmp_path_factory: pytest.TempPathFactory, model_store: Any
) -> Iterator[LiveServer]:
    """Engines that raise plain exceptions, served with a 1 s header deadline."""
    engines = {"stt": BrokenStt(), "llm": BrokenChat("unused"), "tts.fast": ToneTts()}
    settings = scripted_settings(tmp_path_factory.mktemp("faulty"))
    with live_app(
        settings, models=model_store, engines=engines, http=Deadline, log_level="critical"
    ) as server:
        yield server


def assert_generic(text: str) -> None:
    for leak in ("boom", "/home", "hunter2", "Traceback", "RuntimeError", 'File "'):
        assert leak not in text, text


async def test_unexpected_errors_are_generic_500s(faulty_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=faulty_server.url, headers=faulty_server.auth) as client:
        chat = await client.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
        warmup = await client.post("/api/system/models/warmup")
        # Starlette re-raises after the 500 and uvicorn then drops the socket: the 500 must say
        # "Connection: close", or a client reusing the connection fails (httpx: ReadError).
        assert warmup.headers.get("connection") == "close", warmup.headers
        assert (await client.get("/health")).status_code == 200
    assert warmup.status_code == 500 and warmup.headers["content-type"] == PROBLEM
    assert warmup.json()["code"] == "internal_error"
    assert chat.status_code == 500 and chat.json()["error"]["code"] == "internal_error"
    for response in (warmup, chat):
        assert_generic(response.text)


async def test_unexpected_errors_in_a_voice_turn_are_generic(faulty_server: LiveServer) -> None:
    async with connect(faulty_server) as ws:
        client = ChatClient(ws)
        await client.until(lambda e: e["type"] == "session_started")
        await client.send_json({"type": "text", "text": "hello"})
        error = await client.until(lambda e: e["type"] == "error")
        await pong_after(client)  # the session goes on
    assert error["code"] == "internal_error"
    assert_generic(json.dumps(error))


async def test_slow_headers_are_cut_off(faulty_server: LiveServer) -> None:
    """Slowloris: a request line trickled a byte at a time is closed at the header deadline."""
    host, port = faulty_server.url.removeprefix("http://").split(":")
    request = f"GET /health HTTP/1.1\r\nHost: {host}\r\nX-Padding: {'a' * 200}\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection(host, int(port))
    sent, start = 0, time.monotonic()
    with contextlib.suppress(ConnectionError):
        while sent < len(request) and not reader.at_eof() and time.monotonic() - start < 20:
            writer.write(request[sent : sent + 1])
            await writer.drain()
            sent += 1
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(1), 0.1) == b"":
                    break
    writer.close()
    assert sent < len(request), "the server waited for the whole trickled request"
    # A silent connection is closed too; uvicorn alone waits forever for the first request.
    reader, writer = await asyncio.open_connection(host, int(port))
    assert await asyncio.wait_for(reader.read(), 20) == b""
    writer.close()


async def test_header_deadline_spares_prompt_requests_and_websockets(
    faulty_server: LiveServer,
) -> None:
    async with httpx.AsyncClient(base_url=faulty_server.url) as http:
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/health")).status_code == 200  # the same kept-alive socket
    async with connect(faulty_server) as ws:
        client = ChatClient(ws)
        await client.until(lambda e: e["type"] == "session_started")
        await asyncio.sleep(2.5)  # well past the 1 s header deadline
        await pong_after(client)
