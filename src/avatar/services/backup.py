"""Backup and restore of everything AVATAR stores: the database and the audio files.

``backup`` runs while the server keeps serving: it takes one consistent snapshot of the database
(see :mod:`avatar.services.backup_database`), then copies the audio files. Audio files are
written before the rows that name them, so every file the snapshot references already exists;
one deleted between the snapshot and its copy is listed in ``BackupReport.missing_audio``. The
manifest (sizes and sha256 of every file, row counts) is written last.

``restore`` verifies every hash first, refuses to touch a data folder that holds data unless
``force`` (SQLite then moves the old database and audio to ``<data_dir>/pre-restore-<time>/``;
Postgres objects are replaced), stages the files beside their final place, swaps them in, runs
the migrations, and checks the restored row counts against the manifest. Stop the server
before restoring. Moving between SQLite and Postgres is not supported.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import make_url

from avatar import __version__
from avatar.services import backup_database as dbcopy
from avatar.services import backup_files as files
from avatar.services.backup_manifest import (
    DATABASE_FILES,
    BackupCorrupt,
    BackupError,
    Counts,
    DatabaseEntry,
    Dialect,
    FileEntry,
    Manifest,
    Progress,
    RestoreRefused,
    hash_file,
    read_manifest,
    verify,
    write_manifest,
)
from avatar.settings import Settings
from avatar.storage import Database
from avatar.storage.migrate import alembic_config

__all__ = [
    "BackupCorrupt",
    "BackupError",
    "BackupReport",
    "Progress",
    "RestoreRefused",
    "RestoreReport",
    "backup",
    "restore",
]


@dataclass(frozen=True, slots=True)
class BackupReport:
    """What a backup holds; ``missing_audio``: files deleted between snapshot and copy."""

    path: Path
    created_at: datetime
    dialect: Dialect
    counts: Counts
    files: int
    bytes: int
    missing_audio: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What was restored; ``moved_aside`` holds the data that was there before (``force``)."""

    data_dir: Path
    counts: Counts
    files: int
    bytes: int
    revision: str | None
    moved_aside: Path | None


def _dialect(url: str) -> Dialect:
    backend = make_url(url).get_backend_name()
    if backend not in DATABASE_FILES:
        raise BackupError(f"cannot back up a {backend} database", hint="use SQLite or Postgres")
    return "sqlite" if backend == "sqlite" else "postgresql"


# --- backup ---------------------------------------------------------------------------------


async def backup(settings: Settings, dest: Path, progress: Progress | None = None) -> BackupReport:
    """Copy the database and audio of ``settings`` into the new or empty folder ``dest``."""
    dest, created = await asyncio.to_thread(files.prepare_destination, dest)
    try:
        with _file_errors("write the backup"):
            return await _backup(settings, dest, progress)
    except BaseException:
        await asyncio.to_thread(files.discard, dest, created)
        raise


@contextmanager
def _file_errors(action: str) -> Iterator[None]:
    """An OSError (disk full, permissions) as a :class:`BackupError` naming the file."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise BackupError(
            f"cannot {action}: {exc.strerror or exc}{where}",
            hint="check free space and permissions",
        ) from exc


async def _backup(settings: Settings, dest: Path, progress: Progress | None) -> BackupReport:
    url = settings.resolved_database_url
    dialect = _dialect(url)
    name = DATABASE_FILES[dialect]
    if dialect == "sqlite":
        snapshot = await asyncio.to_thread(dbcopy.sqlite_copy, dbcopy.sqlite_file(url), dest / name)
    else:
        snapshot = await dbcopy.pg_dump(url, dest / name)
    size, digest = await asyncio.to_thread(hash_file, dest / name)
    files.counter("database", size, progress)(size)
    audio = await asyncio.to_thread(files.copy_audio, settings.data_dir / "audio", dest, progress)
    entries = [FileEntry(path=name, size=size, sha256=digest), *audio]
    manifest = Manifest(
        avatar_version=__version__,
        created_at=datetime.now(UTC),
        database=DatabaseEntry(dialect=dialect, file=name, revision=snapshot.revision),
        counts=snapshot.counts,
        files=entries,
    )
    await asyncio.to_thread(write_manifest, dest, manifest)
    copied = {f.path.removeprefix("audio/") for f in audio}
    return BackupReport(
        dest,
        manifest.created_at,
        dialect,
        snapshot.counts,
        len(entries),
        sum(f.size for f in entries),
        tuple(sorted(snapshot.audio - copied)),
    )


# --- restore --------------------------------------------------------------------------------


async def restore(
    settings: Settings, src: Path, *, force: bool = False, progress: Progress | None = None
) -> RestoreReport:
    """Put the backup in ``src`` back into the data folder and database of ``settings``."""
    manifest = await asyncio.to_thread(read_manifest, src)
    url = settings.resolved_database_url
    dialect = _dialect(url)
    if manifest.database.dialect != dialect:
        raise BackupError(
            f"the backup holds a {manifest.database.dialect} database, but AVATAR is configured"
            f" for {dialect}",
            hint="restore with the same kind of database (AVATAR_DATABASE_URL)"
            "; moving between SQLite and Postgres is not supported",
        )
    _check_revision(manifest.database.revision)
    with _file_errors("read the backup"):
        await asyncio.to_thread(verify, src, manifest, progress)
    data_dir = settings.data_dir.expanduser().resolve()
    if await _occupied(data_dir, dialect, url) and not force:
        raise RestoreRefused(
            f"{data_dir} already holds data",
            hint="restore into an empty data folder, or pass --force to replace what is there",
        )
    with _file_errors("restore the backup"):
        moved = await _put_back(src, manifest, data_dir, url, progress)
    database = Database(url)
    try:
        revision = await database.migrate()
        counts = await _counts(database)
    finally:
        await database.dispose()
    if counts != manifest.counts:
        raise BackupCorrupt(
            f"the restored database holds {counts}, the manifest says {manifest.counts}",
            hint="restore from another backup",
        )
    return RestoreReport(
        data_dir, counts, len(manifest.files), sum(f.size for f in manifest.files), revision, moved
    )


def _check_revision(revision: str | None) -> None:
    if revision is None:
        return
    try:
        known = ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except CommandError:
        known = None
    if known is None:
        raise BackupError(
            f"the backup's database schema ({revision}) is newer than this AVATAR",
            hint="upgrade AVATAR, then restore",
            code="backup_too_new",
        )


async def _occupied(data_dir: Path, dialect: Dialect, url: str) -> bool:
    if dialect == "sqlite":
        return await asyncio.to_thread(files.sqlite_occupied, data_dir, url)
    audio = await asyncio.to_thread(files.audio_files, data_dir / "audio")
    return bool(audio) or await dbcopy.pg_has_data(url)


async def _put_back(
    src: Path, manifest: Manifest, data_dir: Path, url: str, progress: Progress | None
) -> Path | None:
    """Stage verified copies beside the data, load the database, swap the files in."""
    staging = await asyncio.to_thread(files.new_staging, data_dir)
    try:
        await asyncio.to_thread(files.stage, src, manifest, staging, progress)
        database = staging / manifest.database.file
        if manifest.database.dialect == "postgresql":
            await dbcopy.pg_restore(url, database)
        else:
            await asyncio.to_thread(dbcopy.sqlite_read_snapshot, database)
        return await asyncio.to_thread(files.swap_in, staging, data_dir, manifest, url)
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)


async def _counts(database: Database) -> Counts:
    async with database.read() as session:
        values = {
            t: (await session.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()
            for t in ("sessions", "turns", "voice_profiles")
        }
    return Counts(**values)
