"""Conversation sessions and their turns."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from avatar.storage.common import Page, check_paging, clean_json, clean_text, utcnow
from avatar.storage.errors import Conflict, NotFound
from avatar.storage.inputs import (
    NewTurn,
    TtsMode,
    check_heard_ms,
    check_options,
    check_session_id,
    make_title,
    new_session_id,
)
from avatar.storage.search import SearchHit, search_turns
from avatar.storage.stats import ConversationStats, conversation_stats
from avatar.storage.tables import ConversationRow, TurnRow, VoiceProfileRow


class Conversations:
    """Repository of sessions and turns; the caller owns the transaction (``db.write()``)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _check_voice_profile(self, voice_profile_id: str | None) -> None:
        if voice_profile_id is not None and not await self.session.get(
            VoiceProfileRow, voice_profile_id
        ):
            raise NotFound(f"voice profile {voice_profile_id!r} not found")

    def _session_values(
        self,
        session_id: str | None,
        language: str | None,
        voice_profile_id: str | None,
        tts_mode: str,
    ) -> dict[str, Any]:
        check_options(language, tts_mode)
        now = utcnow()
        return {
            "id": new_session_id() if session_id is None else check_session_id(session_id),
            "created_at": now,
            "updated_at": now,
            "language": language,
            "voice_profile_id": voice_profile_id,
            "tts_mode": tts_mode,
            "turn_count": 0,
        }

    async def create_session(
        self,
        session_id: str | None = None,
        *,
        language: str | None = None,
        voice_profile_id: str | None = None,
        tts_mode: TtsMode = "fast",
    ) -> ConversationRow:
        """A new session; a client-chosen id that already exists is a :class:`Conflict`."""
        values = self._session_values(session_id, language, voice_profile_id, tts_mode)
        await self._check_voice_profile(voice_profile_id)
        if await self.session.get(ConversationRow, values["id"]):
            raise Conflict(f"session {values['id']!r} already exists")
        await self.session.execute(insert(ConversationRow).values(**values))
        return await self.get_session(values["id"], with_turns=False)

    async def get_or_create_session(
        self,
        session_id: str | None = None,
        *,
        language: str | None = None,
        voice_profile_id: str | None = None,
        tts_mode: TtsMode = "fast",
    ) -> ConversationRow:
        """The session with this id (options ignored), or a new one (safe under races)."""
        values = self._session_values(session_id, language, voice_profile_id, tts_mode)
        await self._check_voice_profile(voice_profile_id)
        dialect = self.session.get_bind().dialect.name
        builder = pg_insert if dialect == "postgresql" else sqlite_insert
        await self.session.execute(
            builder(ConversationRow).values(**values).on_conflict_do_nothing()
        )
        return await self.get_session(values["id"], with_turns=False)

    async def update_session(
        self,
        session_id: str,
        *,
        language: str | None = None,
        voice_profile_id: str | None = None,
        tts_mode: TtsMode | None = None,
        title: str | None = None,
    ) -> ConversationRow:
        """Change the given options of a session (``None`` leaves a field as it is)."""
        row = await self.get_session(session_id, with_turns=False)
        check_options(language, tts_mode or row.tts_mode)
        await self._check_voice_profile(voice_profile_id)
        changes = {
            "language": language,
            "voice_profile_id": voice_profile_id,
            "tts_mode": tts_mode,
            "title": make_title(title) if title else None,
        }
        for name, value in changes.items():
            if value is not None:
                setattr(row, name, value)
        row.updated_at = utcnow()
        await self.session.flush()
        return row

    async def add_turn(self, session_id: str, turn: NewTurn) -> TurnRow:
        """Store a turn with the next index of its session; concurrent calls never collide."""
        check_options(turn.language, turn.tts_mode)
        check_heard_ms(turn.heard_ms)
        now = utcnow()
        # The UPDATE takes the session's row lock (Postgres) / the write lock (SQLite) first,
        # so the returned count is the next free index even under concurrent writers.
        bump = (
            update(ConversationRow)
            .where(ConversationRow.id == session_id)
            .values(
                turn_count=ConversationRow.turn_count + 1,
                updated_at=now,
                title=func.coalesce(ConversationRow.title, make_title(turn.user_text)),
            )
            .returning(ConversationRow.turn_count)
            .execution_options(synchronize_session=False)
        )
        index = (await self.session.execute(bump)).scalar_one_or_none()
        if index is None:
            raise NotFound(f"session {session_id!r} not found")
        row = TurnRow(
            session_id=session_id,
            index=index,
            created_at=now,
            user_text=clean_text(turn.user_text),
            assistant_text=clean_text(turn.assistant_text),
            heard_text=None if turn.heard_text is None else clean_text(turn.heard_text),
            heard_ms=turn.heard_ms,
            language=turn.language,
            interrupted=turn.interrupted,
            user_audio=turn.user_audio,
            assistant_audio=turn.assistant_audio,
            tts_mode=turn.tts_mode,
            user_audio_s=turn.user_audio_s,
            assistant_audio_s=turn.assistant_audio_s,
            metrics=clean_json(turn.metrics),
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def mark_interrupted(
        self, session_id: str, index: int, heard_text: str, heard_ms: float | None = None
    ) -> None:
        """The user talked over a reply still playing: note what was heard, keep the whole reply."""
        heard = clean_text(heard_text)
        result = await self.session.execute(
            update(TurnRow)
            .where(TurnRow.session_id == session_id, TurnRow.index == index)
            .values(interrupted=True, heard_text=heard, heard_ms=check_heard_ms(heard_ms))
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise NotFound(f"turn {index} of session {session_id!r} not found")

    async def get_session(self, session_id: str, *, with_turns: bool = True) -> ConversationRow:
        """The session, with its turns in order unless ``with_turns`` is false."""
        query = select(ConversationRow).where(ConversationRow.id == session_id)
        if with_turns:
            query = query.options(selectinload(ConversationRow.turns))
        row = await self.session.execute(query.execution_options(populate_existing=True))
        found = row.scalar_one_or_none()
        if found is None:
            raise NotFound(f"session {session_id!r} not found")
        return found

    async def get_turn(self, session_id: str, index: int) -> TurnRow:
        query = select(TurnRow).where(TurnRow.session_id == session_id, TurnRow.index == index)
        row = (await self.session.execute(query)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"turn {index} of session {session_id!r} not found")
        return row

    async def last_language(self) -> str | None:
        """The language of the newest turn that has one (None before any)."""
        query = (
            select(TurnRow.language)
            .where(TurnRow.language.is_not(None))
            .order_by(TurnRow.id.desc())
            .limit(1)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def list_sessions(self, page: int = 1, page_size: int = 20) -> Page[ConversationRow]:
        """Sessions, most recently active first."""
        offset = check_paging(page, page_size)
        total = (await self.session.execute(select(func.count(ConversationRow.id)))).scalar_one()
        query = (
            select(ConversationRow)
            .order_by(ConversationRow.updated_at.desc(), ConversationRow.id.desc())
            .offset(offset)
            .limit(page_size)
        )
        items = list((await self.session.execute(query)).scalars())
        return Page(items=items, page=page, page_size=page_size, total=total)

    async def search(self, query: str, page: int = 1, page_size: int = 20) -> Page[SearchHit]:
        return await search_turns(self.session, query, page, page_size)

    async def stats(self) -> ConversationStats:
        return await conversation_stats(self.session)

    async def delete_session(self, session_id: str) -> list[str]:
        """Delete a session and its turns; returns the audio files the caller must delete."""
        await self.get_session(session_id, with_turns=False)
        audio = await self.session.execute(
            select(TurnRow.user_audio, TurnRow.assistant_audio).where(
                TurnRow.session_id == session_id
            )
        )
        paths = [path for pair in audio for path in pair if path]
        await self.session.execute(delete(ConversationRow).where(ConversationRow.id == session_id))
        return paths
