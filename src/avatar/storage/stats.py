"""Conversation statistics: counts, audio minutes, and average / p95 of every turn metric.

Postgres computes the percentiles (``percentile_cont``); SQLite has no percentile function, so
there the numeric metric values are unpacked by ``json_each`` and summarised in Python with the
same linear interpolation.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from avatar.storage.tables import ConversationRow, TurnRow

_SQLITE_METRICS = text(
    "SELECT m.key, m.value FROM turns, json_each(turns.metrics) AS m "
    "WHERE m.type IN ('integer', 'real')"
)
_POSTGRES_METRICS = text(
    "SELECT m.key, count(*), avg(v.x), percentile_cont(0.95) WITHIN GROUP (ORDER BY v.x) "
    "FROM turns CROSS JOIN LATERAL jsonb_each(turns.metrics) AS m(key, value) "
    "CROSS JOIN LATERAL (SELECT (m.value #>> '{}')::float8 AS x) AS v "
    "WHERE jsonb_typeof(m.value) = 'number' GROUP BY m.key"
)


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """How many turns carried the metric, its mean and its 95th percentile."""

    count: int
    avg: float
    p95: float


@dataclass(frozen=True, slots=True)
class ConversationStats:
    """Totals over all stored conversations."""

    sessions: int
    turns: int
    user_audio_minutes: float
    assistant_audio_minutes: float
    metrics: dict[str, MetricSummary] = field(default_factory=dict)

    @property
    def audio_minutes(self) -> float:
        return self.user_audio_minutes + self.assistant_audio_minutes


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..1), as Postgres ``percentile_cont``."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    lo, hi = math.floor(position), math.ceil(position)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (position - lo)


def summarise(values: Sequence[float]) -> MetricSummary:
    return MetricSummary(len(values), sum(values) / len(values), percentile(values, 0.95))


async def _metric_summaries(session: AsyncSession) -> dict[str, MetricSummary]:
    if session.get_bind().dialect.name == "postgresql":
        rows = await session.execute(_POSTGRES_METRICS)
        return {key: MetricSummary(n, float(avg), float(p95)) for key, n, avg, p95 in rows}
    grouped: defaultdict[str, list[float]] = defaultdict(list)
    for key, value in await session.execute(_SQLITE_METRICS):
        grouped[key].append(float(value))
    return {key: summarise(values) for key, values in grouped.items()}


async def conversation_stats(session: AsyncSession) -> ConversationStats:
    """Counts, audio minutes and per-metric summaries over every stored turn."""
    sessions = (await session.execute(select(func.count(ConversationRow.id)))).scalar_one()
    turns, user_s, assistant_s = (
        await session.execute(
            select(
                func.count(TurnRow.id),
                func.coalesce(func.sum(TurnRow.user_audio_s), 0.0),
                func.coalesce(func.sum(TurnRow.assistant_audio_s), 0.0),
            )
        )
    ).one()
    return ConversationStats(
        sessions=sessions,
        turns=turns,
        user_audio_minutes=float(user_s or 0.0) / 60,
        assistant_audio_minutes=float(assistant_s or 0.0) / 60,
        metrics=dict(sorted((await _metric_summaries(session)).items())),
    )
