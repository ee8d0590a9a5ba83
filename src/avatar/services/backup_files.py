"""The file work of backup and restore (blocking: run it in a worker thread)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from avatar.services.backup_database import sqlite_file
from avatar.services.backup_manifest import (
    BackupCorrupt,
    BackupError,
    FileEntry,
    Manifest,
    Progress,
    copy_hashed,
)
from avatar.storage.audio_store import CATEGORIES, TEMP_PREFIX

SQLITE_SIDE_FILES: Final = ("-wal", "-shm", "-journal")


def counter(stage: str, total: int, progress: Progress | None) -> Callable[[int], None]:
    """A callback adding bytes to ``stage``'s progress (reports 0 at once)."""
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(stage, done, total)

    advance(0)
    return advance


def audio_files(root: Path) -> list[tuple[str, Path]]:
    """Stored audio files (``<category>/<name>``), without temp files and links."""
    found = []
    for category in CATEGORIES:
        folder = root / category
        if folder.is_dir():
            found += [
                (f"{category}/{p.name}", p)
                for p in sorted(folder.iterdir())
                if p.is_file() and not p.is_symlink() and not p.name.startswith(TEMP_PREFIX)
            ]
    return found


# --- backup ---------------------------------------------------------------------------------


def prepare_destination(dest: Path) -> tuple[Path, bool]:
    """The resolved destination, made if needed; whether it was made. Refuses a full folder."""
    dest = dest.expanduser().resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(
            f"{dest} is not an empty folder",
            code="backup_destination_not_empty",
            hint="back up into a new folder",
        )
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupError(
            f"cannot create {dest}: {exc.strerror}", hint="check the path and its permissions"
        ) from exc
    return dest, created


def discard(folder: Path, remove_folder: bool) -> None:
    """Remove an unfinished backup."""
    for entry in folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    if remove_folder:
        folder.rmdir()


def copy_audio(root: Path, dest: Path, progress: Progress | None) -> list[FileEntry]:
    """Copy every stored audio file under ``dest/audio``, hashing each."""
    files = audio_files(root)
    sizes = {rel: p.stat().st_size for rel, p in files if p.exists()}
    advance = counter("audio", sum(sizes.values()), progress)
    entries = []
    for rel, path in files:
        try:
            size, digest = copy_hashed(path, dest / "audio" / rel, advance)
        except FileNotFoundError:  # deleted since it was listed: its row is gone too
            continue
        entries.append(FileEntry(path=f"audio/{rel}", size=size, sha256=digest))
    return entries


# --- restore --------------------------------------------------------------------------------


def sqlite_occupied(data_dir: Path, url: str) -> bool:
    """Whether the data folder has anything in it, or the database file exists."""
    database = sqlite_file(url)
    has_files = data_dir.is_dir() and any(data_dir.iterdir())
    return has_files or (database.is_file() and database.stat().st_size > 0)


def new_staging(data_dir: Path) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir / f"{TEMP_PREFIX}restore-{uuid.uuid4().hex}"


def stage(src: Path, manifest: Manifest, staging: Path, progress: Progress | None) -> None:
    """Copy the backup's files beside the data folder's, hashed again on the way (the backup
    folder may have changed since it was verified)."""
    advance = counter("restore", sum(f.size for f in manifest.files), progress)
    for item in manifest.files:
        size, digest = copy_hashed(src / item.path, staging / item.path, advance)
        if (size, digest) != (item.size, item.sha256):
            raise BackupCorrupt(
                f"{item.path} changed while it was restored",
                hint="leave the backup folder alone during the restore",
            )


def swap_in(staging: Path, data_dir: Path, manifest: Manifest, url: str) -> Path | None:
    """Move the current data aside (if any), then the staged files into place.

    Returns the folder holding the data that was there before.
    """
    targets = [data_dir / "audio"]
    database = None
    if manifest.database.dialect == "sqlite":
        database = sqlite_file(url)
        targets += [database, *(database.with_name(database.name + s) for s in SQLITE_SIDE_FILES)]
    existing = [t for t in targets if t.exists()]
    moved = None
    if existing:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        moved = data_dir / f"pre-restore-{stamp}-{uuid.uuid4().hex[:6]}"
        moved.mkdir()
        for target in existing:
            shutil.move(target, moved / target.name)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staging / manifest.database.file, database)
    audio = staging / "audio"
    if audio.is_dir():
        shutil.move(audio, data_dir / "audio")
    return moved
