"""Stores each finished voice turn: audio files first, then one row that points at them.

The reply is stored whole (text and audio as generated and sent). For an interrupted turn what
the user heard is kept beside it, as text and as a position in the audio (``heard_ms``); playback
reports of a turn that ran to its end change nothing stored.

Files are written (temp, fsync, rename) before the row that names them is committed, so a crash
leaves at worst an orphan file, never a row pointing at a missing file.
"""

from __future__ import annotations

import asyncio

import numpy as np

from avatar.audio.encode import encode_wav
from avatar.audio.pcm import PcmAudio
from avatar.pipeline.turn import Turn
from avatar.storage import AudioStore, Conversations, Database, NewTurn


class StorageTurnRecorder:
    """The :class:`avatar.pipeline.session.TurnRecorder` backed by the database and audio store."""

    def __init__(self, db: Database, audio: AudioStore) -> None:
        self.db, self.audio = db, audio

    async def last_language(self) -> str | None:
        """The language of the newest stored turn: what a new conversation most likely speaks."""
        async with self.db.read() as session:
            return await Conversations(session).last_language()

    async def mark_interrupted(
        self, session_id: str, index: int, heard_text: str, heard_ms: float | None = None
    ) -> None:
        async with self.db.write() as session:
            await Conversations(session).mark_interrupted(session_id, index, heard_text, heard_ms)

    async def record(
        self,
        session_id: str,
        turn: Turn,
        user_audio: PcmAudio | None,
        reply_audio: list[tuple[bytes, int]],
        interrupted: bool,
    ) -> int:
        user_rel = user_s = reply_rel = reply_s = None
        if user_audio is not None and len(user_audio.samples):
            user_rel = await asyncio.to_thread(
                self.audio.save, "raw", encode_wav(user_audio), ".wav"
            )
            user_s = round(user_audio.duration_s, 3)
        reply = _join(reply_audio)
        if reply is not None:
            category = "tts_hq" if turn.tts_mode == "hq" else "tts_fast"
            reply_rel = await asyncio.to_thread(
                self.audio.save, category, encode_wav(reply), ".wav"
            )
            reply_s = round(reply.duration_s, 3)
        row = NewTurn(
            user_text=turn.user_text,
            assistant_text=turn.reply_text,
            heard_text=turn.heard_text() if interrupted else None,
            heard_ms=heard_position(turn) if interrupted else None,
            language=turn.language,
            interrupted=interrupted,
            user_audio=user_rel,
            assistant_audio=reply_rel,
            tts_mode="hq" if turn.tts_mode == "hq" else "fast",
            user_audio_s=user_s,
            assistant_audio_s=reply_s,
            metrics=dict(turn.metrics),
        )
        try:
            async with self.db.write() as session:
                repo = Conversations(session)
                await repo.get_or_create_session(session_id, language=turn.language)
                stored = await repo.add_turn(session_id, row)
        except Exception:
            # Only on a real failure: a cancellation (barge-in, shutdown) can arrive while the
            # driver's thread still commits the row, which then names these files. An orphan
            # left by a cancelled write that did not commit is removed by `avatar check --repair`.
            for rel in (user_rel, reply_rel):
                if rel:
                    self.audio.delete(rel)
            raise
        return stored.index


def heard_position(turn: Turn) -> float:
    """How far into the reply audio the user heard (ms): the reported position, else all sent."""
    position = turn.played_ms if turn.played_ms is not None else turn.sent_ms
    return round(position, 1)


def _join(chunks: list[tuple[bytes, int]]) -> PcmAudio | None:
    """The whole reply audio as sent: never cut, whatever the client reported playing."""
    if not chunks:
        return None
    rate = chunks[0][1]
    samples = np.frombuffer(b"".join(pcm for pcm, r in chunks if r == rate), dtype="<i2")
    return PcmAudio(samples.astype(np.float32) / 32768.0, rate)
