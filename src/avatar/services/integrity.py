"""Data integrity: the database's own checks, rows against audio files, orphans and stale temps.

:func:`check_integrity` only reads. :func:`repair` removes files that no row names (orphans) and
temp files a crashed write left behind; it never touches a row or a file a row names.

A file younger than ``grace_s`` is left out of both: while the server runs, the recorder writes
a turn's files before the row that names them, so a young unnamed file may be a write in
progress. Before the server serves (start-up) nothing is in flight and ``grace_s=0`` is safe on
SQLite; a Postgres database shared by several servers keeps the grace.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from avatar.storage import AudioStore, Database, StorageError, UnsafePath
from avatar.storage.audio_store import TEMP_PREFIX
from avatar.storage.migrate import current_revision, head_revision
from avatar.storage.tables import ConversationRow, TurnRow, VoiceProfileRow

DEFAULT_GRACE_S: Final = 3600.0


@dataclass(frozen=True, slots=True)
class FileRef:
    """A row's reference to an audio file: ``turns`` row 12, column ``user_audio``."""

    table: str
    row: str
    column: str
    path: str

    def __str__(self) -> str:
        return f"{self.table} {self.row} {self.column} -> {self.path}"


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    """What :func:`check_integrity` found; ``consistent`` ignores orphans and stale temps."""

    dialect: str
    database_problems: tuple[str, ...] = ()
    missing_files: tuple[FileRef, ...] = ()  # a row names a file that is not there
    unsafe_paths: tuple[FileRef, ...] = ()  # a row names a path the store refuses
    torn_files: tuple[FileRef, ...] = ()  # a WAV whose header disagrees with its size
    orphans: tuple[str, ...] = ()  # stored files no row names (older than the grace)
    stale_temps: tuple[str, ...] = ()  # temp files of writes that never finished
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def consistent(self) -> bool:
        """The database passes its checks and every file a row names is there and whole."""
        return not (
            self.database_problems or self.missing_files or self.unsafe_paths or self.torn_files
        )

    @property
    def clean(self) -> bool:
        """Consistent, and no orphan or stale temp file is left."""
        return self.consistent and not (self.orphans or self.stale_temps)

    def problems(self) -> list[str]:
        """One line per finding, for logs and assertion messages."""
        lines = [f"database: {p}" for p in self.database_problems]
        lines += [f"missing file: {r}" for r in self.missing_files]
        lines += [f"unsafe path: {r}" for r in self.unsafe_paths]
        lines += [f"torn file: {r}" for r in self.torn_files]
        lines += [f"orphan file: {p}" for p in self.orphans]
        lines += [f"stale temp file: {p}" for p in self.stale_temps]
        return lines


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What :func:`repair` found, removed, could not remove, and the state it left."""

    before: IntegrityReport
    removed: tuple[str, ...]
    skipped: tuple[str, ...]
    after: IntegrityReport


async def check_integrity(
    db: Database, audio: AudioStore, *, grace_s: float = DEFAULT_GRACE_S
) -> IntegrityReport:
    """Run every check; raises :class:`StorageError` only when the database cannot be read."""
    behind = await schema_problem(db)
    if behind:  # the tables may not be there yet: nothing else can be checked
        return IntegrityReport(dialect=db.dialect, database_problems=(behind,))
    # Files first, rows second: a file whose row commits in between is then seen as named.
    listed = await asyncio.to_thread(_list_files, audio, grace_s)
    problems = await database_problems(db)
    async with db.read() as session:
        refs = await _file_refs(session)
        counts = await _row_counts(session)
    known = {ref.path for ref in refs}
    missing, unsafe, torn = await asyncio.to_thread(_check_refs, audio, refs)
    temps = tuple(rel for rel in listed.candidates if _is_temp(rel))
    orphans = tuple(rel for rel in listed.candidates if not _is_temp(rel) and rel not in known)
    counts["files"] = listed.files
    return IntegrityReport(
        dialect=db.dialect,
        database_problems=tuple(problems),
        missing_files=missing,
        unsafe_paths=unsafe,
        torn_files=torn,
        orphans=orphans,
        stale_temps=temps,
        counts=counts,
    )


async def repair(
    db: Database, audio: AudioStore, *, grace_s: float = DEFAULT_GRACE_S
) -> RepairReport:
    """Remove orphan files and stale temp files (older than ``grace_s``), then check again."""
    before = await check_integrity(db, audio, grace_s=grace_s)
    removed, skipped = await asyncio.to_thread(
        _remove, audio, [*before.orphans, *before.stale_temps]
    )
    after = await check_integrity(db, audio, grace_s=grace_s)
    return RepairReport(before, removed, skipped, after)


async def sweep(
    db: Database, audio: AudioStore, *, grace_s: float = DEFAULT_GRACE_S
) -> tuple[str, ...]:
    """Start-up's cheap repair: remove orphans and stale temps, skip the integrity checks.

    Returns the removed files. Call it after migrating and before serving, with ``grace_s=0``
    on SQLite (no write can be in flight) and the default on a shared Postgres.
    """
    listed = await asyncio.to_thread(_list_files, audio, grace_s)
    async with db.read() as session:
        known = {ref.path for ref in await _file_refs(session)}
    targets = [rel for rel in listed.candidates if _is_temp(rel) or rel not in known]
    removed, _ = await asyncio.to_thread(_remove, audio, targets)
    return removed


# --- files -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Listing:
    files: int  # stored files (temps excluded)
    candidates: tuple[str, ...]  # files and temps older than the grace


def _is_temp(rel: str) -> bool:
    return rel.rpartition("/")[2].startswith(TEMP_PREFIX)


def _list_files(audio: AudioStore, grace_s: float) -> _Listing:
    cutoff = time.time() - grace_s
    everything = audio.orphans(set(), temp_age_s=grace_s)  # every file, temps past the grace
    old: list[str] = []
    for rel in everything:
        try:
            if _is_temp(rel) or os.stat(audio.root / rel).st_mtime <= cutoff:
                old.append(rel)
        except FileNotFoundError:  # deleted while listing
            continue
    return _Listing(sum(not _is_temp(rel) for rel in everything), tuple(old))


def _remove(audio: AudioStore, targets: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    removed: list[str] = []
    skipped: list[str] = []
    for rel in targets:
        try:
            if audio.delete(rel):
                removed.append(rel)
        except (UnsafePath, OSError) as exc:  # a name the store would never make: leave it
            skipped.append(f"{rel}: {exc}")
    return tuple(removed), tuple(skipped)


def _check_refs(
    audio: AudioStore, refs: list[FileRef]
) -> tuple[tuple[FileRef, ...], tuple[FileRef, ...], tuple[FileRef, ...]]:
    missing: list[FileRef] = []
    unsafe: list[FileRef] = []
    torn: list[FileRef] = []
    for ref in refs:
        try:
            path = audio.path(ref.path)
        except UnsafePath:
            unsafe.append(ref)
            continue
        try:
            with path.open("rb") as fh:
                whole = wav_is_whole(fh.read(12), os.fstat(fh.fileno()).st_size)
        except OSError:  # not there, not a file, or unreadable
            missing.append(ref)
            continue
        if path.suffix == ".wav" and not whole:
            torn.append(ref)
    return tuple(missing), tuple(unsafe), tuple(torn)


def wav_is_whole(head: bytes, size: int) -> bool:
    """A RIFF/WAVE header whose declared length matches the file's size."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return False
    return int.from_bytes(head[4:8], "little") + 8 == size


# --- rows ------------------------------------------------------------------------------------


async def _file_refs(session: AsyncSession) -> list[FileRef]:
    refs: list[FileRef] = []
    turns = await session.execute(select(TurnRow.id, TurnRow.user_audio, TurnRow.assistant_audio))
    for turn_id, user, assistant in turns:
        refs += [FileRef("turns", str(turn_id), "user_audio", p) for p in (user,) if p]
        refs += [FileRef("turns", str(turn_id), "assistant_audio", p) for p in (assistant,) if p]
    profiles = await session.execute(select(VoiceProfileRow.id, VoiceProfileRow.audio))
    refs += [FileRef("voice_profiles", pid, "audio", rel) for pid, rel in profiles if rel]
    return refs


async def _row_counts(session: AsyncSession) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, column in (
        ("sessions", ConversationRow.id),
        ("turns", TurnRow.id),
        ("voice_profiles", VoiceProfileRow.id),
    ):
        counts[name] = (await session.execute(select(func.count(column)))).scalar_one()
    return counts


# --- the database's own checks ---------------------------------------------------------------


async def schema_problem(db: Database) -> str | None:
    """Why the schema is not the one this version expects, or None."""
    async with db.engine.connect() as connection:
        revision = await connection.run_sync(current_revision)
    if revision == head_revision():
        return None
    return f"schema at revision {revision}, expected {head_revision()}: start the server once"


async def database_problems(db: Database) -> list[str]:
    """The engine's integrity checks and cross-table consistency (schema at head)."""
    problems = await _sqlite_checks(db) if db.is_sqlite else await _postgres_checks(db)
    async with db.read() as session:
        for sql, message in _CONSISTENCY:
            found = (await session.execute(text(sql))).all()
            problems += [message.format(*row) for row in found[:_MAX_LINES]]
    return problems


_MAX_LINES: Final = 20
_CONSISTENCY: Final = (
    (
        "SELECT t.id, t.session_id FROM turns t LEFT JOIN sessions s ON s.id = t.session_id"
        " WHERE s.id IS NULL",
        "turn {} belongs to session {} which does not exist",
    ),
    (
        "SELECT s.id, s.voice_profile_id FROM sessions s LEFT JOIN voice_profiles v"
        " ON v.id = s.voice_profile_id WHERE s.voice_profile_id IS NOT NULL AND v.id IS NULL",
        "session {} names voice profile {} which does not exist",
    ),
    (
        'SELECT s.id, s.turn_count, MAX(t."index") FROM sessions s JOIN turns t'
        ' ON t.session_id = s.id GROUP BY s.id, s.turn_count HAVING MAX(t."index") > s.turn_count',
        "session {} counts {} turns but stores turn {}",
    ),
)


async def _sqlite_checks(db: Database) -> list[str]:
    problems: list[str] = []
    async with db.read() as session:
        lines = (await session.execute(text("PRAGMA integrity_check"))).scalars().all()
        if list(lines) != ["ok"]:
            problems += [f"integrity_check: {line}" for line in lines[:_MAX_LINES]]
        for table, rowid, parent, _ in (
            await session.execute(text("PRAGMA foreign_key_check"))
        ).all()[:_MAX_LINES]:
            problems.append(f"{table} row {rowid} points at a missing {parent} row")
        fts = (
            await session.execute(
                text("SELECT count(*) FROM sqlite_master WHERE name = 'turns_fts'")
            )
        ).scalar_one()
    if fts:
        try:  # with rank 1 it also compares the index with the turns table
            async with db.write() as session:
                await session.execute(
                    text("INSERT INTO turns_fts(turns_fts, rank) VALUES ('integrity-check', 1)")
                )
        except StorageError as exc:
            problems.append(
                f"the search index disagrees with the turns table ({exc.message}): rebuild it"
                " with INSERT INTO turns_fts(turns_fts) VALUES ('rebuild')"
            )
    return problems


async def _postgres_checks(db: Database) -> list[str]:
    # Indexes left invalid by an interrupted CREATE INDEX CONCURRENTLY (or a failed REINDEX).
    sql = (
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND NOT (i.indisvalid AND i.indisready)"
    )
    async with db.read() as session:
        names = (await session.execute(text(sql))).scalars().all()
    return [f"index {name} is invalid: REINDEX INDEX {name}" for name in names]
