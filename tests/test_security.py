"""Issue 16's attacks, each fed to a real server (real uvicorn on loopback, configured as
`avatar serve` configures it): slow unauthenticated bodies, secrets in messages, the token in
URLs, forged X-Forwarded-For, cross-site cookie writes, and the smaller findings.

The chat engine is the real remote (OpenAI-compatible) one, pointed at a closed port through a
URL with a user and password, as in the review; STT and TTS are scripted (nothing here needs
their output)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets

from avatar.api import gate
from avatar.api.app import create_app
from avatar.api.auth import LoginGuard
from avatar.api.ratelimit import RateLimits
from avatar.api.server import uvicorn_config
from avatar.engines.hub import EngineHub
from avatar.testing.fakes import ScriptedStt, ToneTts
from avatar.testing.processes import closed_port
from conftest import TEST_TOKEN, free_port, make_settings

SECRET = "S3cretPass"
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


class Served:
    def __init__(self, app: Any, port: int) -> None:
        self.app, self.port = app, port
        self.url, self.ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"

    @property
    def state(self) -> Any:
        return self.app.state.avatar

    def fresh_limits(self) -> None:
        self.state.limits = RateLimits(None)
        self.app.state.login_guard.failures = LoginGuard().failures


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = make_settings(
        tmp_path_factory.mktemp("security"),
        llm={
            "engine": "openai",
            "base_url": f"http://admin:{SECRET}@127.0.0.1:{closed_port()}/v1",
            "model": "remote-model",
            "connect_timeout_s": 1.0,
        },
        max_sessions_per_client=2,
        server={"preload": False},
        rate_limits={"health": "30/minute"},  # low, so the forwarded-header test can reach it
    )
    hub = EngineHub(settings)
    hub.override("stt", ScriptedStt("hello"))
    hub.override("tts.fast", ToneTts(ms_per_word=10))
    app = create_app(settings, hub)
    port = free_port()
    config = uvicorn_config(app, settings, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    try:
        yield Served(app, port)
    finally:
        server.should_exit = True
        thread.join(10)


async def raw_exchange(port: int, head: bytes, trickle: bytes = b"", every_s: float = 0.0) -> bytes:
    """Send ``head``, then ``trickle`` a byte at a time; return what the server sent before
    closing (empty if it said nothing within 8 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()

    async def read() -> None:
        while chunk := await reader.read(65536):
            received.extend(chunk)

    reading = asyncio.create_task(read())
    try:
        writer.write(head)
        for byte in trickle:
            if reading.done():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every_s)
        await asyncio.wait_for(reading, 8)
    except (TimeoutError, ConnectionError):
        pass
    finally:
        reading.cancel()
        writer.close()
    return bytes(received)


def post_head(path: str, length: int, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += ["Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --- 1. slow bodies ------------------------------------------------------------------------


async def test_a_body_without_the_token_is_refused_before_it_is_read(served: Served) -> None:
    started = time.monotonic()
    answer = await raw_exchange(
        served.port, post_head("/v1/chat/completions", 100_000), b"{" * 20, every_s=0.5
    )
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert time.monotonic() - started < 8  # closed by the server, not by our 8 s wait


async def test_a_trickled_body_with_the_token_meets_its_deadlines(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gate, "BODY_CHUNK_S", 0.6)
    monkeypatch.setattr(gate, "BODY_TOTAL_S", 2.0)
    head = post_head("/v1/chat/completions", 1000, AUTH)
    total = await raw_exchange(served.port, head, b" " * 40, every_s=0.3)  # total deadline
    assert total.startswith(b"HTTP/1.1 408"), total[:200]
    assert b"body_timeout" in total
    stalled = await raw_exchange(served.port, head + b"{")  # then nothing: chunk deadline
    assert stalled.startswith(b"HTTP/1.1 408"), stalled[:200]


def test_serve_caps_connections_and_trusts_no_proxy_by_default(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    config = uvicorn_config(object(), settings)
    assert config.limit_concurrency == settings.server.limit_concurrency
    assert config.proxy_headers is False
    assert config.http is not None and "HeaderDeadline" in str(config.http)


def test_open_files_limit_is_raised_to_the_hard_limit() -> None:
    import resource

    from avatar.api.server import raise_open_files_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:
        before, after = raise_open_files_limit()
        assert before == min(256, hard) and after == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_accept_failure_line_is_logged_once_per_interval() -> None:
    import logging

    from avatar.api.server import ACCEPT_FAILED, OncePerInterval

    gate_filter = OncePerInterval(ACCEPT_FAILED, interval_s=60)

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, None, None)

    passed = [gate_filter.filter(record(f"{ACCEPT_FAILED}\nsocket: x")) for _ in range(10_000)]
    assert passed.count(True) == 1
    assert gate_filter.filter(record("something else"))


# --- 2. secrets in messages, and /v1 failures in /health -----------------------------------


async def test_no_password_reaches_health_errors_events_or_config(served: Served) -> None:
    served.fresh_limits()
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        chat = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
        failed = await http.post("/v1/chat/completions", json=chat, headers=AUTH)
        assert failed.status_code == 503 and "127.0.0.1" in failed.text
        anonymous = (await http.get("/health")).json()
        owner = (await http.get("/health", headers=AUTH)).json()
    assert anonymous == {
        "status": "degraded",
        "failing": [{"slot": "llm", "code": "engine_unavailable"}],
    }
    assert owner["models"]["llm"]["failing"]["code"] == "engine_unavailable"  # /v1 fed it
    assert "admin:***@" not in json.dumps(owner) and "***@127.0.0.1" in json.dumps(owner)
    url = f"{served.ws_url}/ws/chat"
    async with websockets.connect(url, additional_headers=AUTH) as ws:
        await ws.send(json.dumps({"type": "text", "text": "hello"}))
        events = []
        while not any(e["type"] == "turn_end" for e in events):
            events.append(json.loads(await asyncio.wait_for(ws.recv(), 20)))
    errors = [e for e in events if e["type"] == "error"]
    assert errors and "***@" in errors[0]["message"]
    for text in (failed.text, json.dumps(anonymous), json.dumps(owner), json.dumps(errors)):
        assert SECRET not in text and "admin" not in text


def test_config_show_strips_passwords_from_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from avatar.cli.main import app

    monkeypatch.setenv("AVATAR_DATABASE_URL", f"postgresql+asyncpg://avatar:{SECRET}@db/avatar")
    monkeypatch.setenv("AVATAR_REDIS_URL", f"redis://:{SECRET}@redis:6379/0")
    result = CliRunner().invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert SECRET not in result.output
    assert shown["database_url"] == "postgresql+asyncpg://***@db/avatar"


def test_log_lines_lose_url_passwords() -> None:
    import logging

    from avatar.api.server import SecretFilter

    record = logging.LogRecord(
        "avatar", logging.WARNING, __file__, 1, "cannot reach %s", (f"http://a:{SECRET}@h/",), None
    )
    SecretFilter().filter(record)
    assert record.getMessage() == "cannot reach http://***@h/"


# --- 3. the token never in a URL -----------------------------------------------------------


async def test_sign_in_posts_the_token_and_the_printed_link_works_once(served: Served) -> None:
    served.fresh_limits()
    async with httpx.AsyncClient(base_url=served.url) as browser:
        in_url = await browser.get("/login", params={"token": TEST_TOKEN})
        assert in_url.status_code == 401 and "set-cookie" not in in_url.headers
        posted = await browser.post("/login", data={"token": TEST_TOKEN})
        assert posted.status_code == 303 and "HttpOnly" in posted.headers["set-cookie"]
    code = served.app.state.login_guard.new_code()
    async with (
        httpx.AsyncClient(base_url=served.url) as first,
        httpx.AsyncClient(base_url=served.url) as second,
    ):
        assert (await first.get("/login", params={"code": code})).status_code == 303
        assert (await first.get("/api/system/info")).status_code == 200
        assert (await second.get("/login", params={"code": code})).status_code == 401


def test_access_log_keeps_no_query_string() -> None:
    import logging

    from avatar.api.server import AccessLogFilter

    args = ("127.0.0.1:5000", "GET", "/login?code=abc123", "1.1", 303)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "%s", args, None)
    AccessLogFilter().filter(record)
    assert record.args is not None and record.args[2] == "/login"


# --- 4. forwarded headers ------------------------------------------------------------------


async def test_rotating_x_forwarded_for_from_loopback_gains_nothing(served: Served) -> None:
    served.fresh_limits()
    async with httpx.AsyncClient(base_url=served.url) as http:
        statuses = [
            (await http.get("/health", headers={"X-Forwarded-For": f"10.0.0.{i}"})).status_code
            for i in range(35)
        ]
    assert statuses.count(200) == 30 and statuses[-1] == 429  # 30/minute for the one client
    url = f"{served.ws_url}/ws/chat"
    sockets = [
        await websockets.connect(url, additional_headers={**AUTH, "X-Forwarded-For": f"10.1.0.{i}"})
        for i in range(3)
    ]
    try:
        firsts = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for ws in sockets[:2]]
        assert all(e["type"] == "session_started" for e in firsts)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(sockets[2].recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    finally:
        for ws in sockets:
            await ws.close()


def test_a_configured_proxy_is_believed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, server={"trusted_proxies": ["10.0.0.5"]})
    config = uvicorn_config(object(), settings)
    assert config.proxy_headers and config.forwarded_allow_ips == "10.0.0.5"


# --- 5. cross-site cookie writes -----------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://127.0.0.1:3000"}, {"Sec-Fetch-Site": "same-site"}, {"Origin": "null"}],
)
async def test_cookie_writes_from_another_site_are_refused(served: Served, headers) -> None:
    served.fresh_limits()
    cookie = {"Cookie": f"avatar_token={TEST_TOKEN}"}
    async with httpx.AsyncClient(base_url=served.url) as http:
        response = await http.post("/api/system/models/warmup", headers={**cookie, **headers})
        bearer = await http.post("/api/conversations/no-such/export", headers={**AUTH, **headers})
    assert response.status_code == 403 and response.json()["code"] == "foreign_origin"
    assert bearer.status_code != 403  # programs with the token are not browsers


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://127.0.0.1:{port}"},
        # what a browser sends from our pages (Referrer-Policy: no-referrer hides the origin)
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
    ],
)
async def test_cookie_writes_from_the_ui_itself_pass(served: Served, headers) -> None:
    served.fresh_limits()
    own = {k: v.format(port=served.port) for k, v in headers.items()}
    own["Cookie"] = f"avatar_token={TEST_TOKEN}"
    async with httpx.AsyncClient(base_url=served.url) as http:
        response = await http.post("/api/conversations/no-such/export", headers=own)
    assert response.status_code == 404


# --- 6. the smaller findings ---------------------------------------------------------------


def test_testserver_is_not_an_allowed_host(tmp_path: Path) -> None:
    assert "testserver" not in make_settings(tmp_path).server.allowed_hosts


async def test_api_docs_need_the_token_and_load_nothing_from_a_cdn(served: Served) -> None:
    served.fresh_limits()
    async with httpx.AsyncClient(base_url=served.url) as http:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/assets/swagger-ui-bundle.js"):
            assert (await http.get(path)).status_code == 401, path
        docs = await http.get("/docs", headers=AUTH)
        redoc = await http.get("/redoc", headers=AUTH)
        assets = [
            await http.get(f"/docs/assets/{name}", headers=AUTH)
            for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")
        ]
        schema = await http.get("/openapi.json", headers=AUTH)
        traversal = await http.get("/docs/assets/..%2F__init__.py", headers=AUTH)
    for page in (docs, redoc):
        assert page.status_code == 200 and "/docs/assets/" in page.text
        assert "cdn." not in page.text and "fonts.googleapis" not in page.text
        assert "https:" not in page.headers["content-security-policy"]
    assert all(a.status_code == 200 and len(a.content) > 10_000 for a in assets)
    assert schema.json()["info"]["title"] == "AVATAR"
    assert traversal.status_code == 404


async def test_a_session_id_in_use_is_refused(served: Served) -> None:
    served.fresh_limits()
    url = f"{served.ws_url}/ws/chat?session_id=dup-1"
    async with websockets.connect(url, additional_headers=AUTH) as first:
        assert json.loads(await first.recv())["type"] == "session_started"
        with pytest.raises(websockets.InvalidStatus):  # refused before the handshake ends
            async with websockets.connect(url, additional_headers=AUTH):
                pass
        await first.send(json.dumps({"type": "ping"}))
        assert served.state.open_sessions["dup-1"] is not None  # the first is untouched


async def test_websocket_origin_must_match_the_scheme_too(served: Served) -> None:
    url = f"{served.ws_url}/ws/chat"
    headers = {**AUTH, "Origin": f"https://127.0.0.1:{served.port}"}
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(url, additional_headers=headers):
            pass
    same = {**AUTH, "Origin": served.url}
    async with websockets.connect(url, additional_headers=same) as ws:
        assert json.loads(await ws.recv())["type"] == "session_started"


async def test_failed_sign_ins_are_throttled(served: Served) -> None:
    served.fresh_limits()
    async with httpx.AsyncClient(base_url=served.url) as http:
        wrong = [(await http.post("/login", data={"token": f"guess-{i}"})) for i in range(10)]
        assert all(r.status_code == 401 for r in wrong)
        right = await http.post("/login", data={"token": TEST_TOKEN})
    assert right.status_code == 429 and "set-cookie" not in right.headers
    served.fresh_limits()


def test_markdown_export_makes_links_inert() -> None:
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from avatar.services.conversations import StoredSession
    from avatar.services.export import to_markdown

    now = datetime.now(UTC)
    hostile = (
        "[click](javascript:alert(1)) ![i](javascript:x) \\[y](javascript:z)\n[r]: javascript:q"
    )
    turn = SimpleNamespace(
        index=1,
        created_at=now,
        user_text=hostile,
        assistant_text="ok",
        heard_text=None,
        heard_ms=None,
        interrupted=False,
        language="en",
        tts_mode="fast",
        metrics={},
        user_audio_s=None,
        assistant_audio_s=None,
    )
    session = SimpleNamespace(
        id="s1", title="[t](javascript:t)", created_at=now, updated_at=now, language="en"
    )
    detail = StoredSession(session, [turn])  # type: ignore[arg-type]
    markdown = to_markdown(detail)
    import re

    # an unescaped "](" or "]:" is what makes a link; every bracket is escaped now
    assert not re.search(r"(?<!\\)\]\(|(?<!\\)\]:", markdown), markdown
    assert "javascript:alert(1)" in markdown  # the text itself is kept
