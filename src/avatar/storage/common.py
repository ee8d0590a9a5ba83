"""Column types and value helpers shared by the tables and the repositories."""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from avatar.storage.errors import InvalidInput

T = TypeVar("T")
MAX_PAGE_SIZE = 200
_SURROGATES = re.compile("[\ud800-\udfff]")

# JSONB on Postgres (indexable, compact), JSON text elsewhere.
JsonDict = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always tz-aware UTC in Python, on SQLite (naive text) and Postgres."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: storage needs tz-aware timestamps")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def clean_text(text: str) -> str:
    """Make text storable on every backend: Postgres refuses NUL, both drivers lone surrogates."""
    return _SURROGATES.sub("\ufffd", text.replace("\x00", ""))


def clean_json(value: Any) -> Any:
    """Deep-copy JSON-like data with NaN/Infinity turned into null (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, str):
        return clean_text(value)
    return value


def embedding_to_bytes(values: Sequence[float]) -> bytes:
    """Pack a speaker embedding as float32 little-endian (the stored format)."""
    return struct.pack(f"<{len(values)}f", *values)


def embedding_from_bytes(data: bytes) -> list[float]:
    """Unpack a float32 little-endian speaker embedding."""
    if len(data) % 4:
        raise InvalidInput("embedding bytes are not a whole number of float32 values")
    return list(struct.unpack(f"<{len(data) // 4}f", data))


def check_paging(page: int, page_size: int) -> int:
    """Validate 1-based paging and return the row offset."""
    if page < 1:
        raise InvalidInput(f"page must be 1 or more, got {page}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
    return (page - 1) * page_size


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of results, newest first, with the total across all pages."""

    items: list[T]
    page: int
    page_size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))
