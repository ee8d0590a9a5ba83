"""Full-text search over turns: literal, case-insensitive substrings, safe for any input.

The query is split on whitespace; a hit is one side of a turn (user or assistant) that contains
every term. No character of the query is ever parsed as syntax:

- SQLite: terms of 3+ characters become quoted FTS5 phrases (``"`` doubled), matched against the
  trigram index, one column at a time; shorter terms use ``LIKE`` with ``\\``-escaped wildcards
  (the trigram index cannot serve them).
- Postgres: every term is ``ILIKE '%term%'`` with escaped wildcards, served by pg_trgm GIN indexes.

A Chinese term matches in either script: it stands for any of its spellings (Traditional,
Simplified, Taiwan or mainland phrasing, from OpenCC), so "欢迎" finds "歡迎" and "软件" finds
"軟體". Turns are stored in the script their session used, one script per turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    column,
    func,
    literal,
    or_,
    select,
    table,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from avatar.storage.common import Page, check_paging, clean_text
from avatar.storage.errors import InvalidInput
from avatar.storage.snippets import highlight
from avatar.storage.tables import TurnRow
from avatar.text.script import script_variants

Role = Literal["user", "assistant"]
MAX_QUERY_CHARS = 200
MAX_TERMS = 10
TRIGRAM = 3
_FTS = table("turns_fts", column("rowid"), column("turns_fts"))


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One matching side of a turn; ``snippet`` is HTML-safe with matches in ``<mark>``."""

    session_id: str
    turn_index: int
    role: Role
    snippet: str
    created_at: datetime


def search_terms(query: str) -> list[str]:
    """Split a query into distinct literal terms (case-insensitive duplicates dropped)."""
    query = clean_text(query)
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(f"search query is longer than {MAX_QUERY_CHARS} characters")
    terms: dict[str, str] = {}
    for term in query.split():
        terms.setdefault(term.casefold(), term)
    if len(terms) > MAX_TERMS:
        raise InvalidInput(f"search query has more than {MAX_TERMS} words")
    return list(terms.values())


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def fts5_phrase(term: str) -> str:
    """A quoted FTS5 string: inside quotes every character is literal, ``"`` is doubled."""
    return '"' + term.replace('"', '""') + '"'


def _conditions(dialect: str, role: Role, terms: list[str]) -> list[ColumnElement[bool]]:
    text_column = TurnRow.user_text if role == "user" else TurnRow.assistant_text
    spellings = [script_variants(t) for t in terms]
    if dialect != "sqlite":
        return [_any_like(text_column, variants, ilike=True) for variants in spellings]
    long_terms = [v for v in spellings if min(map(len, v)) >= TRIGRAM]
    conditions = [_any_like(text_column, v) for v in spellings if min(map(len, v)) < TRIGRAM]
    if long_terms:
        match = " AND ".join(
            f"{role}_text : ({' OR '.join(fts5_phrase(t) for t in variants)})"
            for variants in long_terms
        )
        rowids = select(_FTS.c.rowid).where(_FTS.c.turns_fts.op("MATCH")(match))
        conditions.append(TurnRow.id.in_(rowids))
    return conditions


def _any_like(
    text_column: InstrumentedAttribute[str], variants: list[str], *, ilike: bool = False
) -> ColumnElement[bool]:
    """The column contains one of ``variants`` (``LIKE``, or ``ILIKE`` for Postgres)."""
    match = text_column.ilike if ilike else text_column.like
    return or_(*(match(f"%{escape_like(v)}%", escape="\\") for v in variants))


def _side(dialect: str, role: Role, terms: list[str]) -> Select[int, str, int, str, str, datetime]:
    text_column = TurnRow.user_text if role == "user" else TurnRow.assistant_text
    return select(
        TurnRow.id.label("turn_id"),
        TurnRow.session_id,
        TurnRow.index.label("turn_index"),
        literal(role, String).label("role"),
        text_column.label("text"),
        TurnRow.created_at,
    ).where(*_conditions(dialect, role, terms))


async def search_turns(
    session: AsyncSession, query: str, page: int = 1, page_size: int = 20
) -> Page[SearchHit]:
    """Hits newest first (assistant before user within a turn); a blank query finds nothing."""
    offset = check_paging(page, page_size)
    terms = search_terms(query)
    if not terms:
        return Page(items=[], page=page, page_size=page_size, total=0)
    dialect = session.get_bind().dialect.name
    hits = union_all(*(_side(dialect, role, terms) for role in ("user", "assistant"))).subquery()
    total = (await session.execute(select(func.count()).select_from(hits))).scalar_one()
    rows = await session.execute(
        select(hits)
        .order_by(hits.c.created_at.desc(), hits.c.turn_id.desc(), hits.c.role)
        .offset(offset)
        .limit(page_size)
    )
    marks = [v for t in terms for v in script_variants(t)]
    items = [
        SearchHit(
            row.session_id, row.turn_index, row.role, highlight(row.text, marks), row.created_at
        )
        for row in rows
    ]
    return Page(items=items, page=page, page_size=page_size, total=total)
