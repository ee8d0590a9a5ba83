"""Backup and restore through the real storage layer: SQLite (online, WAL) and Postgres.

Data is made with the repositories and the audio store, backed up, restored into a fresh data
folder (and database), and compared: counts, whole sessions, search results and file hashes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
import typer
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from avatar.audio.encode import encode_wav
from avatar.audio.pcm import PcmAudio
from avatar.cli import backup as backup_cli
from avatar.services.backup import (
    BackupCorrupt,
    BackupError,
    RestoreRefused,
    backup,
    restore,
)
from avatar.settings import Settings
from avatar.storage import (
    AudioStore,
    Conversations,
    Database,
    NewTurn,
    NewVoiceProfile,
    VoiceProfiles,
    embedding_to_bytes,
)
from conftest import make_settings

CONVERSATIONS = {
    "trip-planning": [
        ("What is the capital of France?", "The capital of France is Paris."),
        ("And the weather in Tokyo?", "Tokyo is mild and rainy in June."),
    ],
    "shopping": [
        ("Is the jacket 50% off?", "Yes, 50% off until Sunday."),
        ("Écris mon résumé", "Voici votre résumé."),
    ],
    "empty-session": [],
}
QUERIES = ["paris", "tokyo weather", "50%", "résumé", "capital", "nothing-matches-this"]
ADMIN_DSN = os.environ.get(
    "AVATAR_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def tone(freq: float) -> bytes:
    t = np.arange(8000, dtype=np.float32) / 16_000
    return encode_wav(PcmAudio((0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16_000))


async def populate(settings: Settings) -> None:
    """Voice profiles, sessions and turns with audio files, through the real storage layer."""
    db = Database(settings.resolved_database_url)
    await db.migrate()
    store = AudioStore(settings.data_dir / "audio")
    try:
        profile_ids = []
        for i, name in enumerate(("Alice", "Bob")):
            rel = await asyncio.to_thread(store.save, "profiles", tone(200 + i), ".wav")
            async with db.write() as session:
                row = await VoiceProfiles(session).create(
                    NewVoiceProfile(
                        name=name,
                        audio=rel,
                        sample_rate=16_000,
                        duration_s=0.5,
                        reference_text=f"I am {name}",
                        embedding=embedding_to_bytes([0.1 * i] * 8),
                    )
                )
                profile_ids.append(row.id)
        for n, (session_id, turns) in enumerate(CONVERSATIONS.items()):
            async with db.write() as session:
                await Conversations(session).create_session(
                    session_id, language="en", voice_profile_id=profile_ids[n % 2]
                )
            for k, (user, assistant) in enumerate(turns):
                user_rel = await asyncio.to_thread(store.save, "raw", tone(300 + k), ".wav")
                reply_rel = await asyncio.to_thread(store.save, "tts_fast", tone(500 + k), ".wav")
                async with db.write() as session:
                    await Conversations(session).add_turn(
                        session_id,
                        NewTurn(
                            user_text=user,
                            assistant_text=assistant,
                            language="en",
                            user_audio=user_rel,
                            assistant_audio=reply_rel,
                            user_audio_s=0.5,
                            assistant_audio_s=0.5,
                            metrics={"stt_ms": 12.5 + k},
                        ),
                    )
    finally:
        await db.dispose()


async def snapshot(settings: Settings) -> dict[str, Any]:
    """Everything a user can see of the stored data, plus the sha256 of every audio file."""
    db = Database(settings.resolved_database_url)
    try:
        async with db.read() as session:
            repo = Conversations(session)
            page = await repo.list_sessions(page_size=100)
            sessions = []
            for item in page.items:
                row = await repo.get_session(item.id)
                sessions.append(
                    (
                        row.id,
                        row.title,
                        row.language,
                        row.voice_profile_id,
                        row.turn_count,
                        [
                            (
                                t.index,
                                t.user_text,
                                t.assistant_text,
                                t.user_audio,
                                t.assistant_audio,
                                t.metrics,
                                t.created_at,
                            )
                            for t in row.turns
                        ],
                    )
                )
            searches = {}
            for query in QUERIES:
                hits = (await repo.search(query)).items
                searches[query] = [(h.session_id, h.turn_index, h.role, h.snippet) for h in hits]
            profiles = [
                (p.id, p.name, p.audio, p.embedding, p.reference_text)
                for p in (await VoiceProfiles(session).list_profiles()).items
            ]
    finally:
        await db.dispose()
    root = settings.data_dir / "audio"
    hashes = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
    return {"sessions": sessions, "search": searches, "profiles": profiles, "files": hashes}


@pytest.fixture
async def source(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "source")
    await populate(settings)
    return settings


# --- SQLite ---------------------------------------------------------------------------------


async def test_backup_then_restore_into_a_fresh_folder_is_identical(source, tmp_path) -> None:
    steps: list[tuple[str, int, int]] = []
    report = await backup(source, tmp_path / "backup", lambda *step: steps.append(step))
    assert report.dialect == "sqlite" and not report.missing_audio
    assert (report.counts.sessions, report.counts.turns, report.counts.voice_profiles) == (3, 4, 2)
    assert report.files == 1 + 2 + 4 * 2  # database, profile audio, two files per turn
    assert {"database", "audio"} <= {s[0] for s in steps}
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["counts"] == {"sessions": 3, "turns": 4, "voice_profiles": 2}

    target = make_settings(tmp_path / "target")
    restored = await restore(target, tmp_path / "backup")
    assert restored.counts == report.counts and restored.moved_aside is None
    before, after = await snapshot(source), await snapshot(target)
    assert after == before
    assert len(before["files"]) == 10 and before["search"]["paris"]


async def test_backup_is_online_and_consistent(source, tmp_path) -> None:
    db = Database(source.resolved_database_url)
    try:
        async with db.write() as session:  # a writer holds the write lock during the backup
            await Conversations(session).add_turn(
                "shopping", NewTurn(user_text="uncommitted words", assistant_text="x")
            )
            report = await backup(source, tmp_path / "backup")
    finally:
        await db.dispose()
    assert report.counts.turns == 4  # the open transaction is not in the snapshot
    target = make_settings(tmp_path / "target")
    await restore(target, tmp_path / "backup")
    async with conversations(target) as repo:
        assert (await repo.search("uncommitted")).total == 0
        assert (await repo.get_session("shopping")).turn_count == 2
    async with conversations(source) as repo:  # while the source has it, committed
        assert (await repo.search("uncommitted")).total == 1


@asynccontextmanager
async def conversations(settings: Settings) -> AsyncIterator[Conversations]:
    db = Database(settings.resolved_database_url)
    try:
        async with db.read() as session:
            yield Conversations(session)
    finally:
        await db.dispose()


# --- refusals and damaged backups -----------------------------------------------------------


@pytest.fixture
async def backup_dir(source, tmp_path) -> Path:
    await backup(source, tmp_path / "backup")
    return tmp_path / "backup"


def edit_manifest(folder: Path, change: Any) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


async def test_damaged_backups_are_refused_and_change_nothing(backup_dir, tmp_path) -> None:
    target = make_settings(tmp_path / "target")
    audio = sorted((backup_dir / "audio" / "raw").iterdir())[0]
    original = audio.read_bytes()
    flip_byte(audio)
    with pytest.raises(BackupCorrupt, match=f"audio/raw/{audio.name} does not match"):
        await restore(target, backup_dir)
    audio.write_bytes(original)

    flip_byte(backup_dir / "avatar.db")
    with pytest.raises(BackupCorrupt, match="avatar.db does not match") as info:
        await restore(target, backup_dir)
    assert info.value.code == "backup_corrupt" and info.value.hint
    assert not target.data_dir.exists()  # nothing was touched


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["files"][1].update(sha256="0" * 64), "does not match its sha256"),
        (
            lambda m: m["files"].append(dict(m["files"][1], path="../../etc/passwd")),
            "unexpected file path",
        ),
        (
            lambda m: m["files"].append(dict(m["files"][1], path="audio/raw/gone.wav")),
            "audio/raw/gone.wav is missing",
        ),
        (lambda m: m.pop("counts"), "counts: Field required"),
        (lambda m: m["database"].update(dialect="oracle"), "database.dialect"),
        (lambda m: m["files"].pop(0), "does not list 'avatar.db'"),
        (lambda m: m["database"].update(revision="ffffffffffff"), "newer than this AVATAR"),
    ],
)
async def test_manifest_problems_are_named(backup_dir, tmp_path, change, message) -> None:
    edit_manifest(backup_dir, change)
    with pytest.raises(BackupError, match=message):
        await restore(make_settings(tmp_path / "target"), backup_dir)
    assert not (tmp_path / "target").exists()


async def test_unreadable_or_missing_manifest(backup_dir, tmp_path) -> None:
    target = make_settings(tmp_path / "target")
    (backup_dir / "manifest.json").write_text("{not json")
    with pytest.raises(BackupCorrupt, match="not readable JSON"):
        await restore(target, backup_dir)
    (backup_dir / "manifest.json").unlink()
    with pytest.raises(BackupCorrupt, match="not a finished AVATAR backup"):
        await restore(target, backup_dir)
    with pytest.raises(BackupError, match="no backup folder") as info:
        await restore(target, tmp_path / "nowhere")
    assert info.value.code == "backup_not_found"


async def test_restore_into_existing_data_needs_force(backup_dir, source, tmp_path) -> None:
    target = make_settings(tmp_path / "target")
    await populate_other(target)
    before = await snapshot(target)
    with pytest.raises(RestoreRefused, match="already holds data") as info:
        await restore(target, backup_dir)
    assert info.value.code == "restore_target_not_empty" and "--force" in (info.value.hint or "")
    assert await snapshot(target) == before

    report = await restore(target, backup_dir, force=True)
    assert await snapshot(target) == await snapshot(source)
    assert report.moved_aside is not None and (report.moved_aside / "avatar.db").is_file()
    kept = make_settings(report.moved_aside)  # the old data is intact where it was moved
    assert (await snapshot(kept))["sessions"] == before["sessions"]


async def populate_other(settings: Settings) -> None:
    db = Database(settings.resolved_database_url)
    await db.migrate()
    try:
        async with db.write() as session:
            repo = Conversations(session)
            await repo.create_session("older")
            await repo.add_turn("older", NewTurn(user_text="old data", assistant_text="kept"))
    finally:
        await db.dispose()


async def test_backup_refuses_a_full_destination_and_a_missing_database(source, tmp_path) -> None:
    dest = tmp_path / "full"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(BackupError, match="not an empty folder") as info:
        await backup(source, dest)
    assert info.value.code == "backup_destination_not_empty"
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    with pytest.raises(BackupError, match="there is no database"):
        await backup(make_settings(tmp_path / "never-used"), tmp_path / "b2")
    assert not (tmp_path / "b2").exists()  # an unfinished backup is removed


async def test_sqlite_backup_does_not_restore_into_postgres(backup_dir, tmp_path) -> None:
    target = make_settings(
        tmp_path / "target", database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none"
    )
    with pytest.raises(BackupError, match="holds a sqlite database, but AVATAR is configured"):
        await restore(target, backup_dir)


# --- Postgres -------------------------------------------------------------------------------


@pytest.fixture
async def pg_urls() -> AsyncIterator[tuple[str, str]]:
    """Two fresh Postgres databases (source, target), dropped afterwards."""
    try:
        admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_DSN}")
    names = [f"avatar_backup_{secrets.token_hex(5)}" for _ in range(2)]
    try:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
        base = make_url(ADMIN_DSN).set(drivername="postgresql+asyncpg")
        urls = [base.set(database=n).render_as_string(hide_password=False) for n in names]
        yield urls[0], urls[1]
    finally:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_postgres_round_trip(pg_urls, tmp_path) -> None:
    source_url, target_url = pg_urls
    source = make_settings(tmp_path / "source", database_url=source_url)
    await populate(source)
    report = await backup(source, tmp_path / "backup")
    assert report.dialect == "postgresql" and (tmp_path / "backup" / "database.dump").is_file()
    target = make_settings(tmp_path / "target", database_url=target_url)
    restored = await restore(target, tmp_path / "backup")
    assert restored.counts == report.counts
    assert await snapshot(target) == await snapshot(source)
    with pytest.raises(RestoreRefused):  # the database now holds rows
        await restore(make_settings(tmp_path / "t2", database_url=target_url), tmp_path / "backup")


# --- CLI ------------------------------------------------------------------------------------


def test_cli_backup_and_restore(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("backup")(backup_cli.backup)
    app.command("restore")(backup_cli.restore)
    runner = CliRunner()
    source = make_settings(tmp_path / "source")
    asyncio.run(populate(source))
    env = {"AVATAR_DATA_DIR": str(source.data_dir)}
    done = runner.invoke(app, ["backup", str(tmp_path / "b")], env=env)
    assert done.exit_code == 0, done.output
    assert "3 sessions, 4 turns, 2 voice profiles" in done.stdout

    refused = runner.invoke(app, ["restore", str(tmp_path / "b")], env=env)
    assert refused.exit_code == 1
    assert "restore_target_not_empty" in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.output

    fresh = {"AVATAR_DATA_DIR": str(tmp_path / "fresh")}
    restored = runner.invoke(app, ["restore", str(tmp_path / "b")], env=fresh)
    assert restored.exit_code == 0, restored.output
    assert "restored 3 sessions" in restored.stdout

    forced = runner.invoke(app, ["restore", "--force", str(tmp_path / "b")], env=fresh)
    assert forced.exit_code == 0 and "previous data is in" in forced.stdout


async def test_duplicate_manifest_entries_and_unwritable_destination(backup_dir, tmp_path) -> None:
    edit_manifest(backup_dir, lambda m: m["files"].append(m["files"][1]))
    with pytest.raises(BackupCorrupt, match="lists a file twice"):
        await restore(make_settings(tmp_path / "target"), backup_dir)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(BackupError, match="cannot create") as info:
        await backup(make_settings(tmp_path / "source"), tmp_path / "a-file" / "b")
    assert info.value.hint
