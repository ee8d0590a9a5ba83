"""Response schemas of the conversation-history API (``/api/conversations``).

Turns are addressed by their 1-based number within the session (``index``), the same number the
audio URL uses. Stored audio paths never leave the server: a turn carries URLs instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from avatar.services.conversations import Side, StoredSession
from avatar.storage import ConversationRow, ConversationStats, Page, SearchHit, TurnRow

PREFIX = "/api/conversations"


def audio_url(session_id: str, turn: int, side: Side) -> str:
    """Where the audio of one side of a turn is served."""
    return f"{PREFIX}/{session_id}/audio/{turn}?side={side}"


class SessionPublic(BaseModel):
    """One conversation session, without its turns."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str | None = Field(description="The first words of the first user turn.")
    created_at: datetime
    updated_at: datetime = Field(description="When the last turn was stored.")
    language: str | None
    tts_mode: str
    voice_profile_id: str | None
    turn_count: int


class TurnPublic(BaseModel):
    """One exchange: what the user said, what the assistant answered and what was heard."""

    model_config = ConfigDict(from_attributes=True)

    index: int = Field(description="1-based turn number, as in the audio URL.")
    created_at: datetime
    user_text: str
    assistant_text: str = Field(
        description="The whole reply as generated, also when the user interrupted it."
    )
    heard_text: str | None = Field(
        description="What the user heard before interrupting (null when not interrupted)."
    )
    heard_ms: float | None = Field(
        default=None,
        description="How far into the reply audio the user heard before interrupting, in ms "
        "(null when not interrupted). The stored reply audio is always whole.",
    )
    interrupted: bool
    language: str | None
    tts_mode: str
    metrics: dict[str, Any] = Field(description="Stage latencies in ms and other turn metrics.")
    user_audio_s: float | None
    assistant_audio_s: float | None
    user_audio_url: str | None = None
    assistant_audio_url: str | None = None

    @classmethod
    def from_row(cls, row: TurnRow) -> TurnPublic:
        turn = cls.model_validate(row)
        if row.user_audio:
            turn.user_audio_url = audio_url(row.session_id, row.index, "user")
        if row.assistant_audio:
            turn.assistant_audio_url = audio_url(row.session_id, row.index, "assistant")
        return turn


class SessionDetail(SessionPublic):
    """A session with all its turns in order."""

    turns: list[TurnPublic]

    @classmethod
    def from_stored(cls, stored: StoredSession) -> SessionDetail:
        return cls.model_validate(
            {
                **SessionPublic.model_validate(stored.session).model_dump(),
                "turns": [TurnPublic.from_row(turn) for turn in stored.turns],
            }
        )


class PageInfo(BaseModel):
    """Paging of a list: 1-based ``page``, ``total`` items over ``pages`` pages."""

    page: int
    page_size: int
    total: int
    pages: int


class SessionPage(PageInfo):
    """Sessions, most recently active first."""

    items: list[SessionPublic]

    @classmethod
    def from_page(cls, found: Page[ConversationRow]) -> SessionPage:
        return cls(
            items=[SessionPublic.model_validate(row) for row in found.items],
            page=found.page,
            page_size=found.page_size,
            total=found.total,
            pages=found.pages,
        )


class SearchHitPublic(BaseModel):
    """One side of a turn that contains every word of the query."""

    model_config = ConfigDict(from_attributes=True)

    session_id: str
    turn: int = Field(validation_alias="turn_index", description="1-based turn number.")
    role: Side
    snippet: str = Field(description="HTML-escaped text around the match, matches in <mark>.")
    created_at: datetime


class SearchPage(PageInfo):
    """Search hits, newest first."""

    query: str
    items: list[SearchHitPublic]

    @classmethod
    def from_page(cls, query: str, found: Page[SearchHit]) -> SearchPage:
        return cls(
            query=query,
            items=[SearchHitPublic.model_validate(hit) for hit in found.items],
            page=found.page,
            page_size=found.page_size,
            total=found.total,
            pages=found.pages,
        )


class MetricSummaryPublic(BaseModel):
    """How many turns carried the metric, its mean and 95th percentile."""

    model_config = ConfigDict(from_attributes=True)

    count: int
    avg: float
    p95: float


class StatsPublic(BaseModel):
    """Totals over every stored conversation."""

    sessions: int
    turns: int
    audio_minutes: float
    user_audio_minutes: float
    assistant_audio_minutes: float
    latency_ms: dict[str, MetricSummaryPublic] = Field(
        description="Per stage latency metric (e.g. stt_ms, voice_to_voice_ms): avg and p95."
    )

    @classmethod
    def from_stats(cls, totals: ConversationStats) -> StatsPublic:
        return cls(
            sessions=totals.sessions,
            turns=totals.turns,
            audio_minutes=round(totals.audio_minutes, 4),
            user_audio_minutes=round(totals.user_audio_minutes, 4),
            assistant_audio_minutes=round(totals.assistant_audio_minutes, 4),
            latency_ms={
                key: MetricSummaryPublic.model_validate(summary)
                for key, summary in totals.metrics.items()
                if key.endswith("_ms")
            },
        )
