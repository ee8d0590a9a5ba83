"""Crash and data safety: the integrity checker, `avatar check`, and the real server under SIGKILL.

The server runs as a subprocess (`avatar serve --no-preload`) with the real embedded STT/TTS and
the fake OpenAI-compatible LLM as another process (:mod:`avatar.testing.crash`). A write counts
as acknowledged when the client got its ``turn_end``, 201 or 204; after every restart each
acknowledged write must still be there, the database must pass its integrity checks and no row
may name a missing or torn file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import numpy as np
import pytest
from sqlalchemy import event, select, update
from sqlalchemy.engine import make_url
from typer import Typer
from typer.testing import CliRunner

from avatar.audio.encode import encode_wav
from avatar.audio.pcm import PcmAudio
from avatar.cli.check import check
from avatar.engines.hub import EngineHub
from avatar.pipeline.turn import Turn
from avatar.services.integrity import check_integrity, repair
from avatar.services.recorder import StorageTurnRecorder
from avatar.services.voice_profiles import ProfileUpload, VoiceProfileService
from avatar.storage import (
    AudioStore,
    Conversations,
    Database,
    NewTurn,
    NewVoiceProfile,
    VoiceProfiles,
)
from avatar.storage.tables import TurnRow, VoiceProfileRow
from avatar.testing.crash import (
    AUTH,
    PROFILE_TEXT,
    CrashHarness,
    SpeechClips,
    Stack,
    make_speech,
    next_event,
)

PG_ADMIN = os.environ.get(
    "AVATAR_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
OLD = time.time() - 7200  # an mtime past the default one-hour grace


def wav(seconds: float = 0.5) -> bytes:
    return encode_wav(PcmAudio(np.zeros(int(16_000 * seconds), np.float32), 16_000))


def age(path: Path) -> None:
    os.utime(path, (OLD, OLD))


@pytest.fixture(scope="module")
def clips(hub: EngineHub) -> SpeechClips:
    return asyncio.run(make_speech(hub))


# --- databases on both backends --------------------------------------------------------------


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    try:
        admin = await asyncpg.connect(PG_ADMIN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        if os.environ.get("AVATAR_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required (AVATAR_REQUIRE_POSTGRES=1) but not reachable")
        pytest.skip("PostgreSQL not reachable")
    name = f"avatar_crash_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(PG_ADMIN)
            .set(drivername="postgresql+asyncpg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty database."""
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'avatar.db'}"
        else:
            url = await stack.enter_async_context(postgres_database())
        database = Database(url)
        await database.migrate()
        try:
            yield database
        finally:
            await database.dispose()


async def stored_turn(db: Database, audio: AudioStore, session_id: str = "s1") -> NewTurn:
    turn = NewTurn(
        user_text="hello",
        assistant_text="hi",
        user_audio=audio.save("raw", wav(), ".wav"),
        assistant_audio=audio.save("tts_fast", wav(), ".wav"),
    )
    async with db.write() as s:
        repo = Conversations(s)
        await repo.get_or_create_session(session_id)
        await repo.add_turn(session_id, turn)
    return turn


# --- the checker and the repair --------------------------------------------------------------


async def test_check_names_every_problem_and_repair_removes_only_unnamed_files(
    db: Database, tmp_path: Path
) -> None:
    audio = AudioStore(tmp_path / "audio")
    good = await stored_turn(db, audio)
    torn = await stored_turn(db, audio, "s2")
    assert torn.assistant_audio
    torn_path = audio.path(torn.assistant_audio)
    torn_path.write_bytes(torn_path.read_bytes()[:100])  # a write cut short
    profile_file = audio.save("profiles", wav(4.0), ".wav")
    async with db.write() as s:
        await VoiceProfiles(s).create(
            NewVoiceProfile(
                name="gone",
                audio="profiles/" + "0" * 32 + ".wav",
                sample_rate=16_000,
                duration_s=4.0,
            )
        )
        await VoiceProfiles(s).create(
            NewVoiceProfile(name="kept", audio=profile_file, sample_rate=16_000, duration_s=4.0)
        )
        await s.execute(
            update(TurnRow).where(TurnRow.session_id == "s2").values(user_audio="../../etc/passwd")
        )
    orphan = audio.save("tts_hq", wav(), ".wav")
    temp = audio.root / "raw" / ".tmp-0123abcd.part"
    temp.write_bytes(b"half a file")
    young = audio.save("raw", wav(), ".wav")  # unnamed, but younger than the grace
    for rel in (orphan, good.user_audio, good.assistant_audio, profile_file):
        age(audio.path(str(rel)))
    age(temp)

    report = await check_integrity(db, audio)  # the default one-hour grace
    assert report.database_problems == ()
    assert [r.path for r in report.missing_files] == ["profiles/" + "0" * 32 + ".wav"]
    assert [(r.table, r.column) for r in report.missing_files] == [("voice_profiles", "audio")]
    assert [r.path for r in report.unsafe_paths] == ["../../etc/passwd"]
    assert [r.path for r in report.torn_files] == [torn.assistant_audio]
    assert report.orphans == (orphan,)  # `young` is left alone: its row may be on its way
    assert report.stale_temps == ("raw/.tmp-0123abcd.part",)
    assert not report.consistent and not report.clean
    assert report.counts == {"sessions": 2, "turns": 2, "voice_profiles": 2, "files": 7}

    fixed = await repair(db, audio, grace_s=0)
    # The torn turn's user file lost its row reference to the unsafe path: unnamed now.
    expected = {orphan, young, "raw/.tmp-0123abcd.part", torn.user_audio}
    assert set(fixed.removed) == expected
    assert fixed.after.orphans == () and fixed.after.stale_temps == ()
    for rel in (good.user_audio, good.assistant_audio, torn.assistant_audio, profile_file):
        assert audio.path(str(rel)).is_file(), rel  # named files are never touched
    assert fixed.after.missing_files == report.missing_files  # rows are never touched
    assert fixed.after.counts["turns"] == 2 and fixed.after.counts["voice_profiles"] == 2


async def test_a_clean_store_checks_clean(db: Database, tmp_path: Path) -> None:
    audio = AudioStore(tmp_path / "audio")
    await stored_turn(db, audio)
    report = await check_integrity(db, audio, grace_s=0)
    assert report.clean, report.problems()
    assert report.counts["files"] == 2


async def test_sqlite_checks_catch_dangling_rows_and_a_stale_search_index(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'avatar.db'}")
    await db.migrate()
    audio = AudioStore(tmp_path / "audio")
    await stored_turn(db, audio)
    with contextlib.closing(sqlite3.connect(tmp_path / "avatar.db")) as raw:
        raw.execute(  # foreign keys are off by default in a plain connection
            'INSERT INTO turns (session_id, "index", created_at, user_text, assistant_text,'
            " interrupted, tts_mode, metrics) VALUES ('nobody', 1, '2025-01-01', 'x', 'y', 0,"
            " 'fast', '{}')"
        )
        # Drop the first turn from the search index only: the index no longer matches the table.
        raw.execute(
            "INSERT INTO turns_fts (turns_fts, rowid, user_text, assistant_text)"
            " SELECT 'delete', id, user_text, assistant_text FROM turns WHERE id = 1"
        )
        raw.commit()
    report = await check_integrity(db, audio, grace_s=0)
    await db.dispose()
    problems = "\n".join(report.database_problems)
    assert "turns row 2 points at a missing sessions row" in problems
    assert "turn 2 belongs to session nobody which does not exist" in problems
    assert "search index disagrees with the turns table" in problems
    assert not report.consistent


async def test_postgres_check_reports_an_invalid_index(tmp_path: Path) -> None:
    async with postgres_database() as url:
        db = Database(url)
        await db.migrate()
        async with db.write() as s:
            await Conversations(s).create_session("s1")
            for _ in range(2):
                await Conversations(s).add_turn("s1", NewTurn(user_text="same", assistant_text=""))
        conn = await asyncpg.connect(
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        with contextlib.suppress(asyncpg.UniqueViolationError):  # leaves the index INVALID
            await conn.execute("CREATE UNIQUE INDEX CONCURRENTLY ix_dup ON turns (user_text)")
        await conn.close()
        report = await check_integrity(db, AudioStore(tmp_path / "audio"), grace_s=0)
        await db.dispose()
    assert report.database_problems == ("index ix_dup is invalid: REINDEX INDEX ix_dup",)


async def test_an_unmigrated_database_is_reported(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    report = await check_integrity(db, AudioStore(tmp_path / "audio"), grace_s=0)
    await db.dispose()
    assert report.database_problems[0].startswith("schema at revision None, expected")


# --- `avatar check` --------------------------------------------------------------------------


def run_check(data_dir: Path, *args: str) -> tuple[int, str]:
    app = Typer()
    app.command()(check)
    env = {"AVATAR_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_check_command_reports_then_repairs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in [k for k in os.environ if k.startswith("AVATAR_")]:
        monkeypatch.delenv(name)
    data = tmp_path / "data"
    code, out = run_check(data)
    assert code == 1 and "nothing to check" in out
    db = Database(f"sqlite+aiosqlite:///{data / 'avatar.db'}")
    asyncio.run(db.migrate())
    asyncio.run(db.dispose())
    code, out = run_check(data)
    assert code == 0 and "all consistent" in out, out
    orphan = AudioStore(data / "audio").save("raw", wav(), ".wav")
    age(data / "audio" / orphan)
    code, out = run_check(data)
    assert code == 1 and orphan in out and "--repair" in out, out
    code, out = run_check(data, "--repair")
    assert code == 0 and "1 files removed" in out, out
    assert not (data / "audio" / orphan).exists()
    young = AudioStore(data / "audio").save("raw", wav(), ".wav")
    assert run_check(data, "--repair")[0] == 0
    assert (data / "audio" / young).exists()  # younger than the grace: maybe a write in flight


# --- cancelled writes (barge-in, shutdown) ---------------------------------------------------


@contextlib.contextmanager
def cancel_at_commit(db: Database, task_ref: list[asyncio.Task[object]]) -> Iterator[None]:
    """Cancel the task the moment its transaction commits (the driver's thread still commits)."""

    def cancel(_conn: object) -> None:
        if task_ref:
            task_ref[0].cancel()

    event.listen(db.engine.sync_engine, "commit", cancel)
    try:
        yield
    finally:
        event.remove(db.engine.sync_engine, "commit", cancel)


async def test_a_turn_write_cancelled_at_commit_keeps_the_files_its_row_names(
    tmp_path: Path,
) -> None:
    """A turn task cancelled while its row commits (barge-in, the next message, shutdown)."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'avatar.db'}")
    await db.migrate()
    audio = AudioStore(tmp_path / "audio")
    recorder = StorageTurnRecorder(db, audio)
    turn = Turn(1, user_text="hello there", reply_text="hi", language="en", tts_mode="fast")
    user = PcmAudio(np.zeros(16_000, np.float32), 16_000)
    tasks: list[asyncio.Task[object]] = []
    with cancel_at_commit(db, tasks):
        tasks.append(
            asyncio.create_task(
                recorder.record("s1", turn, user, [(b"\0\0" * 8_000, 16_000)], False)
            )
        )
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[0]
    await asyncio.sleep(0.3)
    report = await check_integrity(db, audio, grace_s=0)
    await db.dispose()
    assert report.counts["turns"] == 1  # the commit landed despite the cancellation
    assert report.missing_files == (), (
        "recorder.py deletes the turn's files on any BaseException, but a cancellation does "
        "not stop the driver's thread from committing the row: catch Exception only"
    )


async def test_a_profile_write_cancelled_at_commit_keeps_its_file(
    tmp_path: Path, hub: EngineHub, clips: SpeechClips
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'avatar.db'}")
    await db.migrate()
    audio = AudioStore(tmp_path / "audio")
    service = VoiceProfileService(db, audio, hub)
    upload = ProfileUpload(name="Ada", data=clips.profile_wav, reference_text=PROFILE_TEXT)
    tasks: list[asyncio.Task[object]] = []
    with cancel_at_commit(db, tasks):
        tasks.append(asyncio.create_task(service.create(upload)))
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[0]
    await asyncio.sleep(0.3)
    report = await check_integrity(db, audio, grace_s=0)
    await db.dispose()
    assert report.counts["voice_profiles"] == 1
    assert report.missing_files == (), (
        "voice_profiles.create deletes the file on any BaseException, but the row committed"
    )


# --- the real server under SIGKILL -----------------------------------------------------------


async def stored(stack: Stack) -> tuple[list[tuple[str, str, bool]], set[str]]:
    """(session, user text, interrupted) of every turn, and every profile id."""
    db = Database(stack.database_url)
    try:
        async with db.read() as s:
            query = select(TurnRow.session_id, TurnRow.user_text, TurnRow.interrupted)
            rows = await s.execute(query.order_by(TurnRow.id))
            turns = [(sid, said, bool(cut)) for sid, said, cut in rows]
            profiles = set((await s.execute(select(VoiceProfileRow.id))).scalars())
    finally:
        await db.dispose()
    return turns, profiles


async def settled(stack: Stack) -> None:
    """After a restart: integrity holds and, after the repair step, nothing is left over."""
    db = Database(stack.database_url)
    try:
        audio = AudioStore(stack.data_dir / "audio")
        report = await check_integrity(db, audio, grace_s=0)
        assert report.consistent, report.problems()
        fixed = await repair(db, audio, grace_s=0)
        assert fixed.after.clean, fixed.after.problems()
    finally:
        await db.dispose()


@pytest.mark.slow
async def test_turn_end_means_the_turn_is_stored(tmp_path: Path) -> None:
    """SIGKILL the instant ``turn_end`` arrives: the acknowledged turn must survive."""
    acked: list[tuple[str, str]] = []
    async with Stack(tmp_path) as stack:
        for n in range(3):
            await stack.start()
            sid, said = f"ack-{n}", f"remember number {n}"
            async with stack.connect(sid) as ws:
                await next_event(ws, "session_started")
                await ws.send(json.dumps({"type": "text", "text": said}))
                await next_event(ws, "turn_end")
                await stack.kill()
            acked.append((sid, said))
        await stack.start()
        turns, _ = await stored(stack)
        await settled(stack)
    lost = [a for a in acked if (a[0], a[1], False) not in turns]
    assert not lost, (
        f"{len(lost)} of 3 acknowledged turns lost: TurnFinisher.finish sends turn_end "
        "before recorder.record stores the turn; store first, then send turn_end"
    )


@pytest.mark.slow
async def test_a_message_right_after_turn_end_leaves_the_finished_reply_whole(
    tmp_path: Path,
) -> None:
    """A client that sends its next message as soon as ``turn_end`` arrives (a fast typist)."""
    async with Stack(tmp_path) as stack:
        await stack.start()
        ends: list[dict[str, object]] = []
        async with stack.connect("eager") as ws:
            await next_event(ws, "session_started")
            for n in range(3):
                await ws.send(json.dumps({"type": "text", "text": f"question {n}"}))
                ends.append(await next_event(ws, "turn_end"))
            await ws.send(json.dumps({"type": "ping"}))
            async with asyncio.timeout(30):
                while (event := json.loads(await ws.recv()))["type"] != "pong":
                    if event["type"] in ("turn_end", "interrupted"):
                        ends.append(event)
        turns, _ = await stored(stack)
    assert [e["interrupted"] for e in ends] == [False] * 3, (
        "a finished turn was cancelled while it was being stored: it is stored as interrupted"
        " and the client gets a second turn_end for it"
    )
    assert turns == [("eager", f"question {n}", False) for n in range(3)]


@pytest.mark.slow
async def test_acknowledged_profile_upload_and_delete_survive_sigkill(
    tmp_path: Path, clips: SpeechClips
) -> None:
    async def upload(client: httpx.AsyncClient, name: str) -> str:
        files = {"audio_file": ("v.wav", clips.profile_wav, "audio/wav")}
        reply = await client.post(
            "/api/voice-profiles", files=files, data={"name": name, "reference_text": PROFILE_TEXT}
        )
        assert reply.status_code == 201, reply.text
        return str(reply.json()["id"])

    async with Stack(tmp_path) as stack:
        server = await stack.start()
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=120) as client:
            first = await upload(client, "first")
            await stack.kill()
        server = await stack.start()
        assert (await stored(stack))[1] == {first}
        await settled(stack)
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=120) as client:
            second = await upload(client, "second")
            assert (await client.delete(f"/api/voice-profiles/{first}")).status_code == 204
            await stack.kill()
        await stack.start()
        assert (await stored(stack))[1] == {second}
        await settled(stack)


@pytest.mark.slow
async def test_server_start_sweeps_what_a_crash_left(tmp_path: Path) -> None:
    """Orphans and temp files a crash left are removed when the server starts."""
    async with Stack(tmp_path) as stack:
        await stack.start()
        await stack.kill()
        audio = AudioStore(stack.data_dir / "audio")
        orphan = audio.save("tts_fast", wav(), ".wav")
        temp = audio.root / "raw" / ".tmp-feedbeef.part"
        temp.write_bytes(b"cut short")
        await stack.start()
        left = [p for p in (audio.root / orphan, temp) if p.exists()]
    assert not left, (
        "start-up leaves what a crash left: call integrity.repair(db, audio, grace_s=0) in the "
        "lifespan after db.migrate() (SQLite)"
    )


@pytest.mark.slow
async def test_sigkill_soak_loses_nothing_acknowledged(tmp_path: Path, clips: SpeechClips) -> None:
    """20+ SIGKILLs at random moments, during start-up and at acknowledgements."""
    harness = CrashHarness(
        tmp_path,
        clips,
        seed=20,
        max_delay_s=4.0,
        weights=(0.1, 0.4, 0.5),
        require_clean_start=True,  # the server sweeps what a crash left before serving
    )
    report = await harness.run(kills=20)
    print(report.summary())  # shown with -s / -rP
    assert len(report.cycles) == 20
    assert {c.moment for c in report.cycles} >= {"ack:turn", "ack:upload", "ack:delete", "random"}
    assert sum(report.ledger.turns.values()) >= 5, report.summary()
    assert report.ledger.profiles, report.summary()  # uploads were acknowledged, then killed
    assert not report.problems, report.summary()
