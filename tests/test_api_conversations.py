"""/api/conversations against the live server: real voice turns over /ws/chat, plus rows and WAVs
written straight into the server's database file and audio store where a test needs many turns
or special text.

The rows are written through a second :class:`Database` on the same SQLite file, opened in the
test's event loop: the server's engine belongs to the server thread's loop and must not be shared.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
import wave
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest

from avatar.audio.encode import encode_wav
from avatar.audio.pcm import PcmAudio
from avatar.storage import AudioStore, Conversations, Database, NewTurn, NotFound
from conftest import rate_limits
from wsclient import ChatClient, connect

BASE = "/api/conversations"


@dataclass
class Store:
    db: Database
    audio: AudioStore


@pytest.fixture(scope="module")
async def store(live_server: Any) -> AsyncIterator[Store]:
    db = Database(live_server.settings.resolved_database_url)
    yield Store(db, live_server.app.state.avatar.audio)
    await db.dispose()


def tone(seconds: float, rate: int, freq: float = 440.0) -> PcmAudio:
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    return PcmAudio((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)


def turn(
    user: str,
    assistant: str = "ok",
    *,
    user_s: float | None = 0.5,
    assistant_s: float | None = 0.75,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "user_text": user,
        "assistant_text": assistant,
        "user_s": user_s,
        "assistant_s": assistant_s,
        **extra,
    }


async def seed(store: Store, turns: list[dict[str, Any]]) -> tuple[str, list[NewTurn]]:
    """A new session with these turns; ``user_s`` / ``assistant_s`` make WAVs of that length."""
    session_id = f"t-{uuid.uuid4().hex[:12]}"
    rows = []
    for spec in turns:
        spec = dict(spec)
        user_s, assistant_s = spec.pop("user_s"), spec.pop("assistant_s")
        user = store.audio.save("raw", encode_wav(tone(user_s, 16_000)), ".wav") if user_s else None
        reply = (
            store.audio.save("tts_fast", encode_wav(tone(assistant_s, 22_050, 660)), ".wav")
            if assistant_s
            else None
        )
        rows.append(
            NewTurn(
                user_audio=user,
                assistant_audio=reply,
                user_audio_s=user_s,
                assistant_audio_s=assistant_s,
                **spec,
            )
        )
    async with store.db.write() as session:
        repo = Conversations(session)
        await repo.create_session(session_id, language="en")
        for row in rows:
            await repo.add_turn(session_id, row)
    return session_id, rows


@pytest.fixture(scope="module")
async def voice_turn(live_server: Any, store: Store) -> dict[str, Any]:
    """One real typed-text turn through /ws/chat, stored by the server's turn recorder."""
    text = "Please say hello in three words."
    async with connect(live_server) as ws:
        client = ChatClient(ws)
        started = await client.until(lambda e: e["type"] == "session_started")
        await client.send_json({"type": "text", "text": text})
        end = await client.until(lambda e: e["type"] == "turn_end")
        session_id = started["session_id"]
        # The turn is recorded just after turn_end; closing now could cancel that.
        await eventually(lambda: turn_count(store, session_id), 30)
    return {"session_id": session_id, "text": text, "end": end}


async def turn_count(store: Store, session_id: str) -> int:
    try:
        async with store.db.read() as session:
            return (await Conversations(session).get_session(session_id)).turn_count
    except NotFound:
        return 0


async def eventually(check: Callable[[], Awaitable[object]], timeout_s: float) -> None:
    """Poll ``check`` until it returns something true, failing after ``timeout_s``."""
    for _ in range(int(timeout_s / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout_s} s")


def wav_info(data: bytes) -> tuple[int, int]:
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        return wav.getframerate(), wav.getnframes()


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["detail"]
    return body


# --- reading what a real voice turn stored -----------------------------------------------------


async def test_voice_turn_is_listed_with_turns_and_audio(
    api: httpx.AsyncClient, voice_turn: dict[str, Any]
) -> None:
    session_id, end = voice_turn["session_id"], voice_turn["end"]
    listed = (await api.get(f"{BASE}/sessions", params={"page_size": 100})).json()
    summary = next(s for s in listed["items"] if s["id"] == session_id)
    assert summary["turn_count"] == 1 and summary["title"] == voice_turn["text"]

    detail = await api.get(f"{BASE}/{session_id}")
    assert detail.status_code == 200
    body = detail.json()
    assert body["id"] == session_id and len(body["turns"]) == 1
    first = body["turns"][0]
    assert first["index"] == 1 and first["user_text"] == voice_turn["text"]
    assert first["assistant_text"].strip() == end["text"] and first["interrupted"] is False
    assert first["metrics"]["voice_to_voice_ms"] == end["metrics"]["voice_to_voice_ms"]
    assert first["assistant_audio_url"] == f"{BASE}/{session_id}/audio/1?side=assistant"
    assert first["user_audio_url"] is None  # typed text has no user audio
    assert "user_audio" not in first and "assistant_audio" not in first  # no stored paths

    audio = await api.get(first["assistant_audio_url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert audio.headers["content-disposition"] == (
        f'inline; filename="{session_id}-turn-001-assistant.wav"'
    )
    rate, frames = wav_info(audio.content)
    assert rate == 22_050 and frames / rate == pytest.approx(first["assistant_audio_s"], abs=2e-3)
    missing = await api.get(f"{BASE}/{session_id}/audio/1", params={"side": "user"})
    assert_problem(missing, 404, "not_found")


async def test_list_pages_newest_first(api: httpx.AsyncClient, store: Store) -> None:
    ids = [(await seed(store, [turn(f"page test {i}")]))[0] for i in range(3)]
    first = (await api.get(f"{BASE}/sessions", params={"page_size": 2})).json()
    assert [s["id"] for s in first["items"]] == [ids[2], ids[1]]
    assert first["page"] == 1 and first["page_size"] == 2 and first["total"] >= 3
    assert first["pages"] == -(-first["total"] // 2)
    second = (await api.get(f"{BASE}/sessions", params={"page": 2, "page_size": 2})).json()
    assert second["items"][0]["id"] == ids[0]
    assert second["items"][0]["language"] == "en" and second["items"][0]["turn_count"] == 1
    for params in ({"page_size": 101}, {"page": 0}, {"page_size": "x"}):
        assert_problem(await api.get(f"{BASE}/sessions", params=params), 422, "validation_error")


async def test_session_detail_has_every_field(api: httpx.AsyncClient, store: Store) -> None:
    spec = turn(
        "stop there",
        "The answer is a long one",
        heard_text="The answer",
        interrupted=True,
        language="en",
        metrics={"stt_ms": 12.5, "note": None},
        assistant_s=None,
    )
    session_id, _ = await seed(store, [turn("hi there"), spec])
    body = (await api.get(f"{BASE}/{session_id}")).json()
    assert body["turn_count"] == 2 and body["title"] == "hi there"
    second = body["turns"][1]
    assert second["index"] == 2 and second["interrupted"] is True
    assert second["heard_text"] == "The answer" and second["tts_mode"] == "fast"
    assert second["metrics"] == {"stt_ms": 12.5, "note": None}
    assert second["user_audio_s"] == 0.5 and second["assistant_audio_s"] is None
    assert second["user_audio_url"] == f"{BASE}/{session_id}/audio/2?side=user"
    assert second["assistant_audio_url"] is None
    no_reply = await api.get(f"{BASE}/{session_id}/audio/2")  # default side: assistant
    assert_problem(no_reply, 404, "not_found")
    user = await api.get(f"{BASE}/{session_id}/audio/2", params={"side": "user"})
    assert user.status_code == 200 and wav_info(user.content) == (16_000, 8_000)


# --- auth, unknown ids, bad input -----------------------------------------------------------

ENDPOINTS = [
    ("GET", f"{BASE}/sessions"),
    ("GET", f"{BASE}/sessions/search?query=hello"),
    ("GET", f"{BASE}/sessions/stats"),
    ("GET", f"{BASE}/{{sid}}"),
    ("GET", f"{BASE}/{{sid}}/audio/1?side=user"),
    ("POST", f"{BASE}/{{sid}}/export?format=json"),
    ("DELETE", f"{BASE}/{{sid}}"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-wrong-token"}])
async def test_every_endpoint_needs_the_token(
    api: httpx.AsyncClient,
    live_server: Any,
    store: Store,
    method: str,
    path: str,
    headers: dict[str, str],
) -> None:
    session_id, _ = await seed(store, [turn("secret talk")])
    async with httpx.AsyncClient(base_url=live_server.url, headers=headers) as anonymous:
        response = await anonymous.request(method, path.format(sid=session_id))
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert (await api.get(f"{BASE}/{session_id}")).json()["turn_count"] == 1  # nothing changed


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{BASE}/nosuchsession"),
        ("GET", f"{BASE}/nosuchsession/audio/1"),
        ("GET", f"{BASE}/{{sid}}/audio/2"),
        ("GET", f"{BASE}/{{sid}}/audio/999999?side=user"),
        ("POST", f"{BASE}/nosuchsession/export?format=zip"),
        ("DELETE", f"{BASE}/nosuchsession"),
    ],
)
async def test_unknown_ids_are_404(
    api: httpx.AsyncClient, store: Store, method: str, path: str
) -> None:
    session_id, _ = await seed(store, [turn("only one turn")])
    body = assert_problem(await api.request(method, path.format(sid=session_id)), 404, "not_found")
    assert str(store.audio.root) not in json.dumps(body) and ".wav" not in json.dumps(body)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{BASE}/bad.id"),
        ("GET", f"{BASE}/{'x' * 65}"),
        ("GET", f"{BASE}/{{sid}}/audio/0"),
        ("GET", f"{BASE}/{{sid}}/audio/1?side=both"),
        ("POST", f"{BASE}/{{sid}}/export?format=pdf"),
        ("DELETE", f"{BASE}/bad%20id"),
    ],
)
async def test_malformed_requests_are_422_and_change_nothing(
    api: httpx.AsyncClient, store: Store, method: str, path: str
) -> None:
    session_id, _ = await seed(store, [turn("keep me")])
    response = await api.request(method, path.format(sid=session_id))
    assert_problem(response, 422, "validation_error")
    assert (await api.get(f"{BASE}/{session_id}")).json()["turn_count"] == 1


# --- search --------------------------------------------------------------------------------

TRICKY = [
    'He said "hello" OR world AND NOT near*',
    "今天天气很好，我们去公园吧",
    "<script>alert('x')</script> & more",
    "Robert'); DROP TABLE turns; -- SELECT * FROM sessions",
    "100% of the snake_case",
]


async def test_search_takes_any_input_literally(api: httpx.AsyncClient, store: Store) -> None:
    marker = f"mk{uuid.uuid4().hex[:10]}"
    session_id, _ = await seed(
        store, [turn(f"{marker} {text}", f"{marker} reply {i}") for i, text in enumerate(TRICKY)]
    )

    async def hits(query: str) -> list[dict[str, Any]]:
        response = await api.get(f"{BASE}/sessions/search", params={"query": query})
        assert response.status_code == 200, response.text
        assert response.json()["query"] == query  # verbatim back in JSON
        return [h for h in response.json()["items"] if h["session_id"] == session_id]

    quoted = await hits('"hello" OR')
    assert [(h["turn"], h["role"]) for h in quoted] == [(1, "user")]
    assert "<mark>&quot;hello&quot;</mark>" in quoted[0]["snippet"]
    assert [h["turn"] for h in await hits("天气")] == [2]  # 2 chars: LIKE path
    assert [h["turn"] for h in await hits("今天天气")] == [2]  # 4 chars: trigram path
    script = await hits("<script>")
    assert [h["turn"] for h in script] == [3]
    assert "<mark>&lt;script&gt;</mark>" in script[0]["snippet"]
    assert "<script>" not in script[0]["snippet"] and "&amp; more" in script[0]["snippet"]
    assert [h["turn"] for h in await hits("'); DROP TABLE turns; --")] == [4]
    assert [h["turn"] for h in await hits(f"{marker} %")] == [5]  # not a wildcard
    assert [h["turn"] for h in await hits(f"{marker} _")] == [5]
    both = await hits(marker)
    assert len(both) == 10 and {h["role"] for h in both} == {"user", "assistant"}
    paged = await api.get(
        f"{BASE}/sessions/search", params={"query": marker, "page_size": 4, "page": 3}
    )
    assert paged.json()["total"] == 10 and len(paged.json()["items"]) == 2
    assert (await api.get(f"{BASE}/{session_id}")).json()["turn_count"] == 5  # tables intact
    blank = await api.get(f"{BASE}/sessions/search", params={"query": "   "})
    assert blank.status_code == 200 and blank.json()["total"] == 0


async def test_search_refuses_oversize_queries(api: httpx.AsyncClient) -> None:
    long = await api.get(f"{BASE}/sessions/search", params={"query": "a" * 201})
    assert_problem(long, 422, "validation_error")
    many = await api.get(f"{BASE}/sessions/search", params={"query": " ".join("abcdefghijk")})
    assert_problem(many, 422, "invalid_input")
    assert_problem(await api.get(f"{BASE}/sessions/search"), 422, "validation_error")


# --- stats ---------------------------------------------------------------------------------


async def test_stats_match_what_was_stored(
    api: httpx.AsyncClient, store: Store, voice_turn: dict[str, Any]
) -> None:
    before = (await api.get(f"{BASE}/sessions/stats")).json()
    key = f"probe{uuid.uuid4().hex[:8]}_ms"
    values = [100.0, 300.0, 200.0, 400.0]
    await seed(
        store,
        [
            turn("s1", user_s=1.5, assistant_s=3.0, metrics={key: values[0], "tokens": 7}),
            turn("s2", user_s=2.5, assistant_s=None, metrics={key: values[1]}),
        ],
    )
    await seed(
        store, [turn("s3", user_s=None, assistant_s=1.0, metrics={key: v}) for v in values[2:]]
    )
    after = (await api.get(f"{BASE}/sessions/stats")).json()
    assert after["sessions"] - before["sessions"] == 2
    assert after["turns"] - before["turns"] == 4
    assert after["user_audio_minutes"] - before["user_audio_minutes"] == pytest.approx(
        4.0 / 60, abs=1e-3
    )
    assert after["assistant_audio_minutes"] - before["assistant_audio_minutes"] == pytest.approx(
        5.0 / 60, abs=1e-3
    )
    assert after["audio_minutes"] == pytest.approx(
        after["user_audio_minutes"] + after["assistant_audio_minutes"], abs=1e-3
    )
    # 100, 200, 300, 400: mean 250, p95 at position 2.85 -> 300 + 0.85 * 100
    assert after["latency_ms"][key] == {"count": 4, "avg": 250.0, "p95": pytest.approx(385.0)}
    assert "tokens" not in after["latency_ms"]
    real = after["latency_ms"]["voice_to_voice_ms"]  # from the real voice turn
    assert real["count"] >= 1 and real["avg"] > 0 and real["p95"] > 0


# --- export --------------------------------------------------------------------------------

EXPORT_TURNS = [
    turn("First <script>alert(1)</script> question", "First answer", metrics={"stt_ms": 10}),
    turn(
        "Second question",
        "Second answer was long",
        user_s=None,
        interrupted=True,
        heard_text="Second answer",
        heard_ms=400.0,
    ),
    turn("Third\nquestion on two lines", "你好，第三个回答", user_s=1.0, assistant_s=1.25),
]


async def exported(api: httpx.AsyncClient, session_id: str, fmt: str) -> httpx.Response:
    response = await api.post(f"{BASE}/{session_id}/export", params={"format": fmt})
    assert response.status_code == 200, response.text
    return response


async def test_export_json_has_the_full_data(api: httpx.AsyncClient, store: Store) -> None:
    session_id, _ = await seed(store, EXPORT_TURNS)
    response = await exported(api, session_id, "json")
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="conversation-{session_id}.json"'
    )
    data = response.json()
    assert data["format"] == "avatar.conversation" and data["format_version"] == 1
    session = data["session"]
    assert session == (await api.get(f"{BASE}/{session_id}")).json()
    assert [t["user_text"] for t in session["turns"]] == [t["user_text"] for t in EXPORT_TURNS]
    assert session["turns"][1]["heard_text"] == "Second answer"
    assert session["turns"][1]["heard_ms"] == 400.0 and session["turns"][0]["heard_ms"] is None


async def test_export_markdown_is_a_readable_transcript(
    api: httpx.AsyncClient, store: Store
) -> None:
    session_id, _ = await seed(store, EXPORT_TURNS)
    response = await exported(api, session_id, "markdown")
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.headers["content-disposition"].endswith(f'conversation-{session_id}.md"')
    text = response.text
    assert text.startswith("# First &lt;script&gt;alert(1)&lt;/script&gt; question\n")
    assert "<script>" not in text
    for number in (1, 2, 3):
        assert f"## Turn {number} (" in text
    assert "> Third\n> question on two lines" in text and "> 你好，第三个回答" in text
    heard = "*Interrupted by the user after 0.4 s of 0.8 s; they heard:*\n\n> Second answer"
    assert heard in text
    assert "*Latency: stt 10 ms*" in text
    assert text.index("First answer") < text.index("Second question")


async def test_export_zip_holds_json_markdown_and_every_wav(
    api: httpx.AsyncClient, store: Store
) -> None:
    session_id, rows = await seed(store, EXPORT_TURNS)
    response = await exported(api, session_id, "zip")
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="conversation-{session_id}.zip"'
    )
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == [
        "conversation.json",
        "conversation.md",
        "turn-001-assistant.wav",
        "turn-001-user.wav",
        "turn-002-assistant.wav",
        "turn-003-assistant.wav",
        "turn-003-user.wav",
    ]
    for number, row in enumerate(rows, start=1):
        for side, seconds, rate in (
            ("user", row.user_audio_s, 16_000),
            ("assistant", row.assistant_audio_s, 22_050),
        ):
            if seconds is None:
                continue
            data = archive.read(f"turn-{number:03d}-{side}.wav")
            assert wav_info(data) == (rate, int(seconds * rate))
            path = row.user_audio if side == "user" else row.assistant_audio
            assert path is not None and data == store.audio.path(path).read_bytes()
    document = json.loads(archive.read("conversation.json"))
    turns = document["session"]["turns"]
    assert turns[0]["user_audio_file"] == "turn-001-user.wav"
    assert turns[1]["user_audio_file"] is None
    assert turns[2]["assistant_audio_file"] == "turn-003-assistant.wav"
    assert archive.read("conversation.md").decode().startswith("# First &lt;script&gt;")

    async def no_temp_files() -> bool:  # the temp zip is deleted once sent
        return not any(p.name.startswith(".tmp-") for p in (store.audio.root / "exports").iterdir())

    await eventually(no_temp_files, 5)


async def test_export_is_rate_limited(api: httpx.AsyncClient, store: Store, live_server) -> None:
    session_id, _ = await seed(store, [turn("rate me")])
    with rate_limits(live_server, export="3/minute"):
        for _ in range(3):
            await exported(api, session_id, "markdown")
        response = await api.post(f"{BASE}/{session_id}/export", params={"format": "json"})
    assert_problem(response, 429, "rate_limited")
    assert int(response.headers["retry-after"]) >= 1


# --- delete --------------------------------------------------------------------------------


async def test_delete_removes_rows_then_files(api: httpx.AsyncClient, store: Store) -> None:
    marker = f"del{uuid.uuid4().hex[:10]}"
    session_id, rows = await seed(store, [turn(f"{marker} one"), turn(f"{marker} two")])
    files = [store.audio.path(p) for r in rows for p in (r.user_audio, r.assistant_audio) if p]
    assert len(files) == 4 and all(f.is_file() for f in files)
    response = await api.delete(f"{BASE}/{session_id}")
    assert response.status_code == 204 and response.content == b""
    assert not any(f.exists() for f in files)
    assert_problem(await api.get(f"{BASE}/{session_id}"), 404, "not_found")
    assert_problem(await api.get(f"{BASE}/{session_id}/audio/1"), 404, "not_found")
    found = await api.get(f"{BASE}/sessions/search", params={"query": marker})
    assert found.json()["total"] == 0
    assert_problem(await api.delete(f"{BASE}/{session_id}"), 404, "not_found")
    assert await turn_count(store, session_id) == 0


async def test_paths_outside_the_store_are_never_served_zipped_or_deleted(
    api: httpx.AsyncClient, store: Store, tmp_path: Any
) -> None:
    secret = tmp_path / "secret.wav"
    secret.write_bytes(encode_wav(tone(0.2, 16_000)))
    session_id, _ = await seed(store, [turn("plain", user_s=None)])
    escape = "raw/" + "../" * (len(store.audio.root.parts) + 2) + str(secret).lstrip("/")
    async with store.db.write() as session:
        for rel in (escape, str(secret)):
            await Conversations(session).add_turn(
                session_id, NewTurn(user_text="tampered", user_audio=rel, assistant_audio=rel)
            )
    for number in (2, 3):
        served = await api.get(f"{BASE}/{session_id}/audio/{number}", params={"side": "user"})
        body = assert_problem(served, 404, "not_found")
        assert "secret" not in json.dumps(body)
    archive = zipfile.ZipFile(io.BytesIO((await exported(api, session_id, "zip")).content))
    assert sorted(archive.namelist()) == [
        "conversation.json",
        "conversation.md",
        "turn-001-assistant.wav",
    ]
    assert (await api.delete(f"{BASE}/{session_id}")).status_code == 204
    assert secret.is_file()
