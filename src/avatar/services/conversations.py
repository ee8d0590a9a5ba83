"""Conversation history use cases: list, read, search, stats, per-turn audio, delete.

Each call owns its transaction. Files are touched only after the rows that name them are read
(audio) or deleted and committed (delete), so a crash never leaves a row pointing at nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from avatar.storage import (
    AudioStore,
    ConversationRow,
    Conversations,
    ConversationStats,
    Database,
    NotFound,
    Page,
    SearchHit,
    TurnRow,
    UnsafePath,
)

log = logging.getLogger("avatar.conversations")

Side = Literal["user", "assistant"]

MEDIA_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".webm": "audio/webm",
}


@dataclass(frozen=True, slots=True)
class AudioFile:
    """A stored file ready to serve: its location, type and a server-made download name."""

    path: Path
    media_type: str
    filename: str


@dataclass(frozen=True, slots=True)
class StoredSession:
    """One stored conversation and its turns in order, as read in one transaction."""

    session: ConversationRow
    turns: list[TurnRow]


def safe_stem(session_id: str) -> str:
    """A file-name-safe form of a session id (stored ids are already ``[A-Za-z0-9_-]``)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in session_id)[:64] or "session"


def turn_file_name(index: int, side: Side, rel: str) -> str:
    """``turn-003-user.wav``: the name of a turn's audio in downloads and export archives."""
    return f"turn-{index:03d}-{side}{PurePosixPath(rel).suffix.lower()}"


def side_audio(row: TurnRow, side: Side) -> str | None:
    return row.user_audio if side == "user" else row.assistant_audio


def locate(audio: AudioStore, rel: str) -> Path | None:
    """The stored file, or None when it is gone or its path is unsafe (logged, never served)."""
    try:
        return audio.open_path(rel)
    except NotFound:
        return None
    except UnsafePath:
        log.warning("refusing to serve an unsafe stored audio path")
        return None


class ConversationService:
    """The conversation history over one database and audio store."""

    def __init__(self, db: Database, audio: AudioStore) -> None:
        self.db, self.audio = db, audio

    async def list_sessions(self, page: int, page_size: int) -> Page[ConversationRow]:
        async with self.db.read() as session:
            return await Conversations(session).list_sessions(page, page_size)

    async def get_session(self, session_id: str) -> StoredSession:
        """The session and its turn rows; :class:`NotFound` for an unknown id."""
        async with self.db.read() as session:
            row = await Conversations(session).get_session(session_id)
            return StoredSession(row, list(row.turns))

    async def search(self, query: str, page: int, page_size: int) -> Page[SearchHit]:
        async with self.db.read() as session:
            return await Conversations(session).search(query, page, page_size)

    async def stats(self) -> ConversationStats:
        async with self.db.read() as session:
            return await Conversations(session).stats()

    async def turn_audio(self, session_id: str, index: int, side: Side) -> AudioFile:
        """The audio of one side of a turn; :class:`NotFound` when there is none."""
        async with self.db.read() as session:
            row = await Conversations(session).get_turn(session_id, index)
        rel = side_audio(row, side)
        path = await asyncio.to_thread(locate, self.audio, rel) if rel else None
        if rel is None or path is None:
            raise NotFound(
                f"turn {index} of session {session_id!r} has no {side} audio",
                hint="the other side may have audio; see the session's turns",
            )
        return AudioFile(
            path=path,
            media_type=MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"),
            filename=f"{safe_stem(row.session_id)}-{turn_file_name(index, side, rel)}",
        )

    async def delete_session(self, session_id: str) -> int:
        """Delete the rows, commit, then their audio files; returns how many files went."""
        async with self.db.write() as session:
            paths = await Conversations(session).delete_session(session_id)
        removed = 0
        for rel in paths:
            try:
                removed += await asyncio.to_thread(self.audio.delete, rel)
            except (UnsafePath, OSError):
                # The rows are gone; a file left behind is an orphan AudioStore.orphans() finds.
                log.warning("could not delete an audio file of session %s", session_id)
        return removed
