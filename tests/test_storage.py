"""Storage repositories, search and migrations, run against SQLite and a real PostgreSQL.

Postgres: a fresh database ``avatar_test_<hex>`` is created on the server at 127.0.0.1:5432 (or
``AVATAR_TEST_POSTGRES_DSN``) for the test session and dropped afterwards. When the server is not
reachable the postgres cases are skipped, unless ``AVATAR_REQUIRE_POSTGRES=1`` makes that a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from datetime import UTC

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Connection, make_url

from avatar.storage import (
    Conflict,
    Conversations,
    Database,
    InvalidInput,
    NewTurn,
    NewVoiceProfile,
    NotFound,
    StorageError,
    TurnRow,
    VoiceProfiles,
    embedding_from_bytes,
    embedding_to_bytes,
)
from avatar.storage.migrate import alembic_config, head_revision, include_object
from avatar.storage.snippets import highlight
from avatar.storage.tables import Base

ADMIN_DSN = os.environ.get(
    "AVATAR_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
_ADMIN = make_url(ADMIN_DSN)
UNREACHABLE = f"PostgreSQL not reachable at {_ADMIN.host}:{_ADMIN.port or 5432}"
TABLES = {"sessions", "turns", "voice_profiles"}
HEAD = "0002"


class PostgresServer:
    """Creates throw-away databases on a reachable server and drops them at the end."""

    def __init__(self, admin: asyncpg.Connection) -> None:
        self.admin = admin
        self.created: list[str] = []
        self._shared: str | None = None

    async def create_database(self) -> str:
        name = f"avatar_test_{secrets.token_hex(6)}"
        await self.admin.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        url = make_url(ADMIN_DSN).set(drivername="postgresql+asyncpg", database=name)
        return url.render_as_string(hide_password=False)

    async def shared_database(self) -> str:
        """One migrated database for the whole test session (tables emptied per test)."""
        if self._shared is None:
            self._shared = await self.create_database()
            database = Database(self._shared)
            await database.migrate()
            await database.dispose()
        return self._shared

    async def drop_all(self) -> None:
        for name in self.created:
            await self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def pg_server() -> AsyncIterator[PostgresServer | None]:
    try:
        admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        yield None
        return
    server = PostgresServer(admin)
    try:
        yield server
    finally:
        await server.drop_all()
        await admin.close()


def _postgres_or_skip(server: PostgresServer | None) -> PostgresServer:
    if server is None:
        if os.environ.get("AVATAR_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{UNREACHABLE} and AVATAR_REQUIRE_POSTGRES=1")
        pytest.skip(UNREACHABLE)
    return server


@pytest.fixture(params=["sqlite", "postgres"])
async def fresh_url(request: pytest.FixtureRequest, tmp_path, pg_server) -> str:
    """URL of an empty, unmigrated database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'avatar.db'}"
    return await _postgres_or_skip(pg_server).create_database()


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path, pg_server) -> AsyncIterator[Database]:
    """A migrated, empty database."""
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'avatar.db'}")
        await database.migrate()
    else:
        database = Database(await _postgres_or_skip(pg_server).shared_database())
        async with database.write() as session:
            await session.execute(text("TRUNCATE turns, sessions, voice_profiles CASCADE"))
    try:
        yield database
    finally:
        await database.dispose()


def profile(name: str = "Alice", audio: str = "profiles/a.wav") -> NewVoiceProfile:
    return NewVoiceProfile(name=name, audio=audio, sample_rate=16000, duration_s=6.5)


async def new_session(db: Database, session_id: str | None = None) -> str:
    async with db.write() as session:
        return (await Conversations(session).create_session(session_id)).id


async def add(db: Database, session_id: str, user: str = "", assistant: str = "", **kw) -> int:
    async with db.write() as session:
        turn = NewTurn(user_text=user, assistant_text=assistant, **kw)
        return (await Conversations(session).add_turn(session_id, turn)).index


# --- database and migrations ---------------------------------------------------------------


def _table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _schema_diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"include_object": include_object, "compare_type": True}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_migrate_from_empty_then_again_is_a_no_op(fresh_url: str) -> None:
    database = Database(fresh_url)
    try:
        assert await database.migrate() == head_revision() == HEAD
        async with database.engine.connect() as connection:
            assert await connection.run_sync(_table_names) >= TABLES
            assert await connection.run_sync(_schema_diff) == []
        assert await database.migrate() == HEAD
        async with database.read() as session:
            versions = await session.execute(text("SELECT version_num FROM alembic_version"))
            assert versions.scalars().all() == [HEAD]
    finally:
        await database.dispose()


async def test_sqlite_pragmas_are_on_for_reads_and_writes(tmp_path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:
        await database.migrate()
        expected = {
            "journal_mode": "wal",
            "foreign_keys": 1,
            "synchronous": 1,
            "busy_timeout": 5000,
        }
        for opener in (database.read, database.write):
            async with opener() as session:
                for name, value in expected.items():
                    assert (await session.execute(text(f"PRAGMA {name}"))).scalar_one() == value
    finally:
        await database.dispose()


async def test_check_reports_health(db: Database) -> None:
    report = await db.check()
    assert report["ok"] is True
    assert report["dialect"] == db.dialect
    assert report["latency_ms"] >= 0


async def test_unreachable_database_is_a_storage_error() -> None:
    database = Database("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    try:
        report = await database.check()
        assert report["ok"] is False and "error" in report
        with pytest.raises(StorageError):
            async with database.read() as session:
                await session.execute(text("SELECT 1"))
    finally:
        await database.dispose()


async def test_failed_write_rolls_back(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.write() as session:
            await Conversations(session).create_session("rolled-back")
            raise RuntimeError("boom")
    async with db.read() as session:
        with pytest.raises(NotFound):
            await Conversations(session).get_session("rolled-back")


# --- sessions and turns --------------------------------------------------------------------


async def test_create_sessions_with_server_and_client_ids(db: Database) -> None:
    server_made = await new_session(db)
    assert len(server_made) == 32 and int(server_made, 16) >= 0
    assert await new_session(db, "client_Session-1") == "client_Session-1"
    with pytest.raises(Conflict):
        await new_session(db, "client_Session-1")
    for bad in ["", "a" * 65, "has space", "../etc", "semi;colon", "ünicode"]:
        with pytest.raises(InvalidInput):
            await new_session(db, bad)


async def test_get_or_create_session_keeps_existing(db: Database) -> None:
    async with db.write() as session:
        first = await Conversations(session).get_or_create_session("s1", language="en")
    async with db.write() as session:
        again = await Conversations(session).get_or_create_session("s1", language="zh")
    assert (again.id, again.language, again.created_at) == ("s1", "en", first.created_at)
    assert first.created_at.tzinfo == UTC


async def test_turns_get_ordered_indexes_and_round_trip(db: Database) -> None:
    sid = await new_session(db)
    long_text = "word " * 40
    assert await add(db, sid, long_text, "first answer", metrics={"stt_ms": 120.5}) == 1
    heard = {"heard_text": "answer", "heard_ms": 350.5}
    assert await add(db, sid, "second", "answer two", interrupted=True, **heard) == 2
    assert await add(db, sid, "third", "", tts_mode="hq", user_audio="raw/u.wav") == 3
    async with db.read() as session:
        row = await Conversations(session).get_session(sid)
    assert [t.index for t in row.turns] == [1, 2, 3]
    assert row.turn_count == 3
    assert row.title is not None and row.title.startswith("word word") and len(row.title) <= 80
    first, second, third = row.turns
    assert first.metrics == {"stt_ms": 120.5} and first.user_text == long_text
    assert second.interrupted is True and second.heard_text == "answer"
    assert second.heard_ms == 350.5 and second.assistant_text == "answer two"
    assert first.heard_ms is None
    assert third.tts_mode == "hq" and third.user_audio == "raw/u.wav"
    assert first.created_at.tzinfo == UTC and row.updated_at >= row.created_at


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
async def test_bad_heard_position_is_refused_and_changes_nothing(db: Database, bad: float) -> None:
    sid = await new_session(db)
    with pytest.raises(InvalidInput, match="heard_ms"):
        await add(db, sid, "q", "a", interrupted=True, heard_ms=bad)
    await add(db, sid, "q", "a")
    with pytest.raises(InvalidInput, match="heard_ms"):
        async with db.write() as session:
            await Conversations(session).mark_interrupted(sid, 1, "a", bad)
    async with db.read() as session:
        (only,) = (await Conversations(session).get_session(sid)).turns
    assert (only.index, only.interrupted, only.heard_ms) == (1, False, None)


async def test_mark_interrupted_keeps_the_whole_reply(db: Database) -> None:
    sid = await new_session(db)
    await add(db, sid, "q", "the whole long answer", assistant_audio_s=3.0)
    async with db.write() as session:
        await Conversations(session).mark_interrupted(sid, 1, "the whole", 900.0)
    async with db.read() as session:
        (only,) = (await Conversations(session).get_session(sid)).turns
    assert only.interrupted and only.assistant_text == "the whole long answer"
    assert (only.heard_text, only.heard_ms, only.assistant_audio_s) == ("the whole", 900.0, 3.0)


async def test_upgrade_from_0001_keeps_turns_and_backfills_heard_position(fresh_url: str) -> None:
    """Rows written by 0001 (interrupted replies cut to what was heard) gain ``heard_ms``."""
    database = Database(fresh_url)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_upgrade_to, "0001")
            for statement in _OLD_ROWS:
                await connection.execute(text(statement))
        assert await database.migrate() == HEAD
        async with database.read() as session:
            turns = (await Conversations(session).get_session("old")).turns
            hits = await Conversations(session).search("harbour")
        assert [(t.interrupted, t.heard_ms) for t in turns] == [(False, None), (True, 1500.0)]
        assert [t.assistant_text for t in turns] == ["whole reply", "the harbour"]
        assert hits.total == 1  # search still indexes the old rows after the column was added
        async with database.engine.begin() as connection:
            await connection.run_sync(_downgrade_to, "0001")
        assert await database.migrate() == HEAD
        async with database.read() as session:
            assert (await Conversations(session).search("harbour")).total == 1
    finally:
        await database.dispose()


_OLD_ROWS = [
    "INSERT INTO sessions (id, created_at, updated_at, tts_mode, turn_count) "
    "VALUES ('old', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'fast', 2)",
    'INSERT INTO turns (session_id, "index", created_at, user_text, assistant_text, '
    "interrupted, tts_mode, assistant_audio_s, metrics) VALUES "
    "('old', 1, CURRENT_TIMESTAMP, 'q1', 'whole reply', false, 'fast', 2.0, '{}'), "
    "('old', 2, CURRENT_TIMESTAMP, 'q2', 'the harbour', true, 'fast', 1.5, '{}')",
]


def _upgrade_to(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _downgrade_to(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def test_last_language_is_the_newest_turns(db: Database) -> None:
    async with db.read() as session:
        assert await Conversations(session).last_language() is None  # nothing stored yet
    first, second = await new_session(db), await new_session(db)
    await add(db, first, "你好", "你好！", language="zh-TW")
    await add(db, second, "Hi", "Hello!", language="en")
    await add(db, first, "typed", "ok")  # a turn without a language does not count
    async with db.read() as session:
        assert await Conversations(session).last_language() == "en"


async def test_concurrent_add_turn_assigns_distinct_indexes(db: Database) -> None:
    sid = await new_session(db)
    indexes = await asyncio.gather(*(add(db, sid, f"question {i}") for i in range(20)))
    assert sorted(indexes) == list(range(1, 21))
    async with db.read() as session:
        row = await Conversations(session).get_session(sid)
    assert row.turn_count == 20 and [t.index for t in row.turns] == list(range(1, 21))


async def test_update_session_and_invalid_options(db: Database) -> None:
    sid = await new_session(db)
    async with db.write() as session:
        row = await Conversations(session).update_session(sid, language="zh", tts_mode="hq")
    assert (row.language, row.tts_mode) == ("zh", "hq")
    with pytest.raises(InvalidInput):
        async with db.write() as session:
            await Conversations(session).update_session(sid, tts_mode="loud")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await add(db, sid, "x", tts_mode="slow")


async def test_list_sessions_pages_most_recent_first(db: Database) -> None:
    ids = [await new_session(db, f"s{i}") for i in range(5)]
    await add(db, "s1", "makes s1 the most recently active")
    async with db.read() as session:
        first = await Conversations(session).list_sessions(page=1, page_size=2)
        last = await Conversations(session).list_sessions(page=3, page_size=2)
    assert first.total == 5 and first.pages == 3
    assert [s.id for s in first.items] == ["s1", "s4"]
    assert [s.id for s in last.items] == [ids[0]]
    with pytest.raises(InvalidInput):
        async with db.read() as session:
            await Conversations(session).list_sessions(page=0)


async def test_delete_session_cascades_and_returns_audio_paths(db: Database) -> None:
    sid = await new_session(db)
    await add(db, sid, "a", "b", user_audio="raw/1.wav", assistant_audio="tts_fast/1.wav")
    await add(db, sid, "c", "d", assistant_audio="tts_hq/2.wav")
    keep = await new_session(db)
    await add(db, keep, "kept", user_audio="raw/keep.wav")
    async with db.write() as session:
        paths = await Conversations(session).delete_session(sid)
    assert sorted(paths) == ["raw/1.wav", "tts_fast/1.wav", "tts_hq/2.wav"]
    async with db.read() as session:
        remaining = await session.execute(
            select(TurnRow.session_id, func.count()).group_by(TurnRow.session_id)
        )
        assert remaining.all() == [(keep, 1)]
        with pytest.raises(NotFound):
            await Conversations(session).get_session(sid)


async def test_unknown_ids_are_not_found(db: Database) -> None:
    sid = await new_session(db)
    calls = [
        lambda c, v: c.get_session("missing"),
        lambda c, v: c.get_turn(sid, 1),
        lambda c, v: c.add_turn("missing", NewTurn(user_text="hi")),
        lambda c, v: c.delete_session("missing"),
        lambda c, v: c.create_session(voice_profile_id="missing"),
        lambda c, v: v.get("missing"),
        lambda c, v: v.update("missing", name="x"),
        lambda c, v: v.delete("missing"),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            async with db.write() as session:
                await call(Conversations(session), VoiceProfiles(session))


async def test_awkward_text_is_stored(db: Database) -> None:
    sid = await new_session(db)
    await add(db, sid, "nul\x00byte", "lone \ud800 surrogate 😀")
    async with db.read() as session:
        turn = await Conversations(session).get_turn(sid, 1)
    assert (turn.user_text, turn.assistant_text) == ("nulbyte", "lone \ufffd surrogate 😀")


# --- voice profiles ------------------------------------------------------------------------


async def test_voice_profile_crud(db: Database) -> None:
    vector = [0.25, -1.5, 3.0]
    async with db.write() as session:
        repo = VoiceProfiles(session)
        created = await repo.create(profile("  Alice  "))
        await repo.set_analysis(
            created.id,
            engine_status="cloning_ready",
            quality={"snr_db": 31.5},
            embedding=embedding_to_bytes(vector),
        )
        await repo.create(profile("Bob", "profiles/b.wav"))
    async with db.write() as session:
        repo = VoiceProfiles(session)
        got = await repo.get(created.id)
        assert (got.name, got.engine_status, got.quality) == (
            "Alice",
            "cloning_ready",
            {"snr_db": 31.5},
        )
        assert got.embedding is not None and embedding_from_bytes(got.embedding) == vector
        listed = await repo.list_profiles()
        assert [p.name for p in listed.items] == ["Bob", "Alice"] and listed.total == 2
        updated = await repo.update(
            created.id, name="Alice", description="warm", reference_text="hi"
        )
        assert (updated.description, updated.reference_text) == ("warm", "hi")
        assert updated.updated_at > got.created_at
        assert await repo.delete(created.id) == "profiles/a.wav"
    async with db.read() as session:
        assert (await VoiceProfiles(session).list_profiles()).total == 1


async def test_voice_profile_names_are_unique_and_valid(db: Database) -> None:
    async with db.write() as session:
        bob = await VoiceProfiles(session).create(profile("Bob"))
        await VoiceProfiles(session).create(profile("Carol"))
    for name in ["Bob", " Bob "]:
        with pytest.raises(Conflict, match="already exists"):
            async with db.write() as session:
                await VoiceProfiles(session).create(profile(name))
    with pytest.raises(Conflict):
        async with db.write() as session:
            await VoiceProfiles(session).update(bob.id, name="Carol")
    for bad in ["", "   ", "x" * 101]:
        with pytest.raises(InvalidInput):
            async with db.write() as session:
                await VoiceProfiles(session).create(profile(bad))


async def test_concurrent_creates_of_one_name_give_one_profile(db: Database) -> None:
    async def create() -> str:
        async with db.write() as session:
            return (await VoiceProfiles(session).create(profile("Same"))).id

    results = await asyncio.gather(*(create() for _ in range(5)), return_exceptions=True)
    assert sum(isinstance(r, str) for r in results) == 1
    refusals = [r for r in results if not isinstance(r, str)]
    assert all(isinstance(r, Conflict) and "named 'Same'" in str(r) for r in refusals)


async def test_concurrent_get_or_create_gives_one_session(db: Database) -> None:
    async def get_or_create() -> str:
        async with db.write() as session:
            return (await Conversations(session).get_or_create_session("shared")).id

    assert await asyncio.gather(*(get_or_create() for _ in range(5))) == ["shared"] * 5
    async with db.read() as session:
        assert (await Conversations(session).list_sessions()).total == 1


async def test_deleting_a_profile_unlinks_sessions(db: Database) -> None:
    async with db.write() as session:
        voice = await VoiceProfiles(session).create(profile())
        await Conversations(session).create_session("uses-voice", voice_profile_id=voice.id)
    async with db.write() as session:
        await VoiceProfiles(session).delete(voice.id)
    async with db.read() as session:
        row = await Conversations(session).get_session("uses-voice")
    assert row.voice_profile_id is None


# --- search --------------------------------------------------------------------------------

NASTY = [
    '"quoted" phrase',
    "AND OR NOT NEAR",
    "col:value ^start *star",
    "(paren) [bracket] {brace}",
    "100% sure_thing",
    "back\\slash \\%",
    "'; DROP TABLE turns; --",
    "<script>alert('x')</script>",
    "emoji 😀🎉 party",
    'NEAR("a" "b", 3)',
]


async def test_search_finds_english_words_case_insensitively(db: Database) -> None:
    sid = await new_session(db)
    await add(db, sid, "What is the Weather tomorrow?", "Sunny weather, no rain.")
    await add(db, sid, "Tell me a joke", "Why did the chicken cross the road?")
    async with db.read() as session:
        hits = await Conversations(session).search("weather")
        both = await Conversations(session).search("WEATHER tomorrow")
        none = await Conversations(session).search("weather joke")
    assert [(h.turn_index, h.role) for h in hits.items] == [(1, "assistant"), (1, "user")]
    assert hits.items[1].snippet == "What is the <mark>Weather</mark> tomorrow?"
    assert [(h.role, h.session_id) for h in both.items] == [("user", sid)]
    assert none.total == 0


async def test_search_finds_chinese_substrings(db: Database) -> None:
    sid = await new_session(db)
    await add(db, sid, "今天天气很好", "是的，天气不错。")
    async with db.read() as session:
        short = await Conversations(session).search("天气")  # 2 chars: below a trigram
        long = await Conversations(session).search("今天天气")
        absent = await Conversations(session).search("明天")
    assert [h.role for h in short.items] == ["assistant", "user"]
    assert short.items[1].snippet == "今天<mark>天气</mark>很好"
    assert [(h.role, h.snippet) for h in long.items] == [("user", "<mark>今天天气</mark>很好")]
    assert absent.total == 0


async def test_search_finds_chinese_in_either_script(db: Database) -> None:
    sid = await new_session(db)
    await add(db, sid, "歡迎大家來體驗語音識別", "這個軟體很好用。")  # stored Traditional
    await add(db, sid, "欢迎使用简体", "好的")  # stored Simplified
    async with db.read() as session:
        repo = Conversations(session)
        simplified = await repo.search("欢迎")  # 2 chars: LIKE
        traditional = await repo.search("體驗語音")  # 4 chars: FTS trigram (or ILIKE)
        mainland_word = await repo.search("软件")  # Taiwan phrasing stored: 軟體
        absent = await repo.search("歡送")
    assert [(h.turn_index, h.role) for h in simplified.items] == [(2, "user"), (1, "user")]
    assert simplified.items[1].snippet == "<mark>歡迎</mark>大家來體驗語音識別"
    assert [(h.turn_index, h.snippet) for h in traditional.items] == [
        (1, "歡迎大家來<mark>體驗語音</mark>識別")
    ]
    assert [(h.turn_index, h.role) for h in mainland_word.items] == [(1, "assistant")]
    assert absent.total == 0


async def test_search_treats_every_character_literally(db: Database) -> None:
    sid = await new_session(db)
    for text_ in NASTY:
        await add(db, sid, text_, "plain reply")
    async with db.read() as session:
        repo = Conversations(session)
        for index, text_ in enumerate(NASTY, start=1):
            hits = await repo.search(text_)
            assert (index, "user") in {(h.turn_index, h.role) for h in hits.items}, text_
            assert (await repo.get_turn(sid, index)).user_text == text_
        for wildcard in ["%", "_", "\\", "*", '"', "%%%", "___"]:
            found = {h.turn_index for h in (await repo.search(wildcard)).items}
            expected = {i for i, t in enumerate(NASTY, start=1) if wildcard in t}
            assert found == expected, wildcard


async def test_search_snippets_are_html_escaped(db: Database) -> None:
    sid = await new_session(db)
    xss = "<script>alert('x')</script> & <b>bold</b>"
    await add(db, sid, xss, "ok")
    async with db.read() as session:
        hit = (await Conversations(session).search("alert")).items[0]
        stored = await Conversations(session).get_turn(sid, 1)
    assert hit.snippet == (
        "&lt;script&gt;<mark>alert</mark>(&#x27;x&#x27;)&lt;/script&gt; "
        "&amp; &lt;b&gt;bold&lt;/b&gt;"
    )
    assert stored.user_text == xss


async def test_search_pages_newest_first_and_follows_deletes(db: Database) -> None:
    old, new = await new_session(db), await new_session(db)
    for i in range(3):
        await add(db, old, f"needle old {i}")
    for i in range(2):
        await add(db, new, f"needle new {i}")
    async with db.read() as session:
        page1 = await Conversations(session).search("needle", page=1, page_size=4)
        page2 = await Conversations(session).search("needle", page=2, page_size=4)
    assert page1.total == page2.total == 5
    assert [(h.session_id, h.turn_index) for h in page1.items + page2.items] == [
        (new, 2),
        (new, 1),
        (old, 3),
        (old, 2),
        (old, 1),
    ]
    async with db.write() as session:
        await Conversations(session).delete_session(new)
    async with db.read() as session:
        assert (await Conversations(session).search("needle")).total == 3
        assert (await Conversations(session).search("new")).total == 0


async def test_search_blank_and_oversized_queries(db: Database) -> None:
    async with db.read() as session:
        assert (await Conversations(session).search("   ")).total == 0
        with pytest.raises(InvalidInput):
            await Conversations(session).search("x" * 201)
        with pytest.raises(InvalidInput):
            await Conversations(session).search(" ".join(f"w{i}" for i in range(11)))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), stored=st.text(min_size=1, max_size=60))
async def test_search_finds_any_stored_substring(
    db: Database, data: st.DataObject, stored: str
) -> None:
    start = data.draw(st.integers(0, len(stored) - 1))
    query = stored[start : data.draw(st.integers(start + 1, len(stored)))]
    sid = await new_session(db)
    await add(db, sid, stored)
    async with db.read() as session:
        try:
            page = await Conversations(session).search(query, page_size=200)
        except InvalidInput:
            assert len(query.split()) > 10  # the only refusal for short queries
            return
    found = {(h.session_id, h.role) for h in page.items}
    assert (sid, "user") in found or not query.replace("\x00", "").split()


def test_snippet_windows_long_text_around_the_first_match() -> None:
    text_ = "a" * 300 + " Needle <b> " + "z" * 300
    snippet = highlight(text_, ["needle", "NEED"])
    assert snippet.startswith("…") and snippet.endswith("…")
    assert "<mark>Needle</mark> &lt;b&gt;" in snippet
    visible = snippet.replace("<mark>", "").replace("</mark>", "").replace("&lt;", "<")
    assert len(visible.replace("&gt;", ">").strip("…")) == 160
    assert highlight("no match here", ["zzz"]) == "no match here"


# --- stats ---------------------------------------------------------------------------------


async def test_stats_on_empty_database(db: Database) -> None:
    async with db.read() as session:
        stats = await Conversations(session).stats()
    assert (stats.sessions, stats.turns, stats.audio_minutes, stats.metrics) == (0, 0, 0.0, {})


async def test_stats_counts_minutes_and_metric_percentiles(db: Database) -> None:
    sid = await new_session(db)
    await new_session(db)
    for value in range(1, 101):
        metrics = {"stt_ms": value, "voice_to_voice_ms": value * 10.0, "engine": "x", "ok": True}
        await add(db, sid, "q", "a", user_audio_s=3.0, assistant_audio_s=1.5, metrics=metrics)
    await add(db, sid, "no metrics")
    async with db.read() as session:
        stats = await Conversations(session).stats()
    assert (stats.sessions, stats.turns) == (2, 101)
    assert stats.user_audio_minutes == pytest.approx(5.0)
    assert stats.audio_minutes == pytest.approx(7.5)
    assert set(stats.metrics) == {"stt_ms", "voice_to_voice_ms"}
    stt = stats.metrics["stt_ms"]
    assert (stt.count, stt.avg, stt.p95) == (100, pytest.approx(50.5), pytest.approx(95.05))
    assert stats.metrics["voice_to_voice_ms"].p95 == pytest.approx(950.5)
