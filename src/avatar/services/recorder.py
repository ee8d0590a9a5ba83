"""Stores each finished voice turn: audio files first, then one row that points at them.

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

    async def mark_interrupted(self, session_id: str, index: int, heard_text: str) -> None:
        async with self.db.write() as session:
            await Conversations(session).mark_interrupted(session_id, index, heard_text)

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
        reply = _join(reply_audio, turn)
        if reply is not None:
            category = "tts_hq" if turn.tts_mode == "hq" else "tts_fast"
            reply_rel = await asyncio.to_thread(
                self.audio.save, category, encode_wav(reply), ".wav"
            )
            reply_s = round(reply.duration_s, 3)
        heard = turn.heard_text() if interrupted else None
        row = NewTurn(
            user_text=turn.user_text,
            assistant_text=heard if interrupted else turn.reply_text,
            heard_text=heard,
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


def _join(chunks: list[tuple[bytes, int]], turn: Turn) -> PcmAudio | None:
    """The reply audio as the user heard it (cut at the playback position when interrupted)."""
    if not chunks:
        return None
    rate = chunks[0][1]
    samples = np.frombuffer(b"".join(pcm for pcm, r in chunks if r == rate), dtype="<i2")
    if turn.played_ms is not None:
        samples = samples[: int(turn.played_ms * rate / 1000)]
    return PcmAudio(samples.astype(np.float32) / 32768.0, rate)
