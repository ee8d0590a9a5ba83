"""The tables: conversation sessions, their turns, and voice profiles.

Row classes are named ``…Row`` to keep them apart from the pipeline's ``Turn`` and the API's
schemas. Migrations never import this module; ``tests/test_storage.py`` checks that the
migrations and these classes describe the same schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from avatar.storage.common import JsonDict, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
TTS_MODES = ("fast", "hq")


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations name constraints the same."""

    metadata = MetaData(naming_convention=NAMING)


class VoiceProfileRow(Base):
    """A reference voice for cloning engines, or a packaged voice."""

    __tablename__ = "voice_profiles"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    reference_text: Mapped[str] = mapped_column(Text, default="")
    audio: Mapped[str] = mapped_column(String(255))
    sample_rate: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    quality: Mapped[dict[str, Any]] = mapped_column(JsonDict, default=dict)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    engine_status: Mapped[str] = mapped_column(String(32), default="packaged_voice")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConversationRow(Base):
    """One conversation session (one voice-chat connection, or a resumed one)."""

    __tablename__ = "sessions"
    __table_args__ = (CheckConstraint("tts_mode IN ('fast', 'hq')", name="tts_mode"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    title: Mapped[str | None] = mapped_column(String(200), nullable=True)
    language: Mapped[str | None] = mapped_column(String(16), nullable=True)
    voice_profile_id: Mapped[str | None] = mapped_column(
        ForeignKey("voice_profiles.id", ondelete="SET NULL"), nullable=True, index=True
    )
    tts_mode: Mapped[str] = mapped_column(String(8), default="fast")
    turn_count: Mapped[int] = mapped_column(Integer, default=0)

    turns: Mapped[list[TurnRow]] = relationship(
        back_populates="session",
        order_by="TurnRow.index",
        lazy="raise",
        passive_deletes=True,
    )


class TurnRow(Base):
    """One exchange: what the user said and what the assistant answered (and was heard)."""

    __tablename__ = "turns"
    __table_args__ = (
        UniqueConstraint("session_id", "index"),
        CheckConstraint("tts_mode IN ('fast', 'hq')", name="tts_mode"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_text: Mapped[str] = mapped_column(Text, default="")
    assistant_text: Mapped[str] = mapped_column(Text, default="")
    heard_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    heard_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    language: Mapped[str | None] = mapped_column(String(16), nullable=True)
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)
    user_audio: Mapped[str | None] = mapped_column(String(255), nullable=True)
    assistant_audio: Mapped[str | None] = mapped_column(String(255), nullable=True)
    tts_mode: Mapped[str] = mapped_column(String(8), default="fast")
    user_audio_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    assistant_audio_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JsonDict, default=dict)

    session: Mapped[ConversationRow] = relationship(back_populates="turns", lazy="raise")
