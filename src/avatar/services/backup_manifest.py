"""The backup manifest: what a backup holds, each file's size and sha256, and how to check it.

A backup folder is ``manifest.json`` plus the files it lists: the database (``avatar.db`` for
SQLite, ``database.dump`` from ``pg_dump`` for Postgres) and ``audio/<category>/<name>``. The
manifest is written last, so a folder without one is an unfinished backup. Paths in a manifest
are never trusted: only the database file name and audio paths of the store's own form pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from avatar.errors import AvatarError
from avatar.storage.audio_store import CATEGORIES, TEMP_PREFIX

MANIFEST: Final = "manifest.json"
FORMAT: Final = "avatar-backup"
VERSION: Final = 1
DATABASE_FILES: Final = {"sqlite": "avatar.db", "postgresql": "database.dump"}
_AUDIO_PATH: Final = re.compile(rf"audio/({'|'.join(CATEGORIES)})/[A-Za-z0-9._-]{{1,128}}")
BLOCK: Final = 1 << 20

Progress = Callable[[str, int, int], None]  # (stage, bytes done, bytes total)
Dialect = Literal["sqlite", "postgresql"]


class BackupError(AvatarError):
    """A backup or restore that cannot be done."""

    code = "backup_failed"


class BackupCorrupt(BackupError):
    """A backup folder whose manifest or files are missing, damaged or altered."""

    code = "backup_corrupt"
    http_status = 422


class RestoreRefused(BackupError):
    """A restore that would overwrite existing data without ``--force``."""

    code = "restore_target_not_empty"
    http_status = 409


class FileEntry(BaseModel):
    path: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("path")
    @classmethod
    def _safe_path(cls, path: str) -> str:
        name = path.rsplit("/", 1)[-1]
        if path in DATABASE_FILES.values() or (
            _AUDIO_PATH.fullmatch(path) and name not in {".", ".."}
        ):
            return path
        raise ValueError(f"unexpected file path {path!r}")


class DatabaseEntry(BaseModel):
    dialect: Dialect
    file: str
    revision: str | None


class Counts(BaseModel):
    sessions: int = Field(ge=0)
    turns: int = Field(ge=0)
    voice_profiles: int = Field(ge=0)


class Manifest(BaseModel):
    """``manifest.json`` of a backup folder."""

    format: Literal["avatar-backup"] = FORMAT
    version: int = VERSION
    avatar_version: str
    created_at: datetime
    database: DatabaseEntry
    counts: Counts
    files: list[FileEntry]

    def entry(self, path: str) -> FileEntry:
        for item in self.files:
            if item.path == path:
                return item
        raise BackupCorrupt(f"the manifest does not list {path!r}", hint=_CORRUPT_HINT)


_CORRUPT_HINT = "the backup folder was altered or damaged: restore from another backup"


def copy_hashed(
    src: Path, dst: Path, on_bytes: Callable[[int], None] | None = None
) -> tuple[int, str]:
    """Copy ``src`` to a new file ``dst`` (fsynced), hashing on the way: (size, sha256)."""
    digest, size = hashlib.sha256(), 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as reader, dst.open("xb") as writer:
        while block := reader.read(BLOCK):
            digest.update(block)
            writer.write(block)
            size += len(block)
            if on_bytes:
                on_bytes(len(block))
        writer.flush()
        os.fsync(writer.fileno())
    return size, digest.hexdigest()


def hash_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as reader:
        while block := reader.read(BLOCK):
            digest.update(block)
            size += len(block)
            if on_bytes:
                on_bytes(len(block))
    return size, digest.hexdigest()


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically (temp file, fsync, rename): the backup is complete."""
    temp = folder / f"{TEMP_PREFIX}{MANIFEST}"
    with temp.open("w", encoding="utf-8") as fh:
        fh.write(manifest.model_dump_json(indent=2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, folder / MANIFEST)


def read_manifest(folder: Path) -> Manifest:
    """The manifest of a backup folder, or :class:`BackupCorrupt` saying what is wrong."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BackupError(
            f"no backup folder at {folder}",
            hint="give the folder `avatar backup` wrote",
            code="backup_not_found",
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupCorrupt(
            f"{folder} has no {MANIFEST}: it is not a finished AVATAR backup",
            hint="give the folder `avatar backup` wrote",
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupCorrupt(
            f"{MANIFEST} is not readable JSON ({exc})", hint=_CORRUPT_HINT
        ) from None
    if isinstance(raw, dict) and isinstance(raw.get("version"), int) and raw["version"] > VERSION:
        raise BackupError(
            f"the backup has format version {raw['version']}, newer than this"
            f" AVATAR reads ({VERSION})",
            hint="upgrade AVATAR, then restore",
        )
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BackupCorrupt(
            f"{MANIFEST} is not valid: {where}: {first['msg']}", hint=_CORRUPT_HINT
        ) from None
    paths = [f.path for f in manifest.files]
    if len(set(paths)) != len(paths):
        raise BackupCorrupt(f"{MANIFEST} lists a file twice", hint=_CORRUPT_HINT)
    if manifest.database.file != DATABASE_FILES[manifest.database.dialect]:
        raise BackupCorrupt(f"{MANIFEST} names an unexpected database file", hint=_CORRUPT_HINT)
    manifest.entry(manifest.database.file)
    return manifest


def verify(folder: Path, manifest: Manifest, progress: Progress | None = None) -> None:
    """Check every listed file's size and sha256; :class:`BackupCorrupt` names the first bad."""
    total, done = sum(f.size for f in manifest.files), 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress("verify", done, total)

    for item in manifest.files:
        path = folder / item.path
        if not path.is_file() or path.is_symlink():
            raise BackupCorrupt(f"{item.path} is missing from the backup", hint=_CORRUPT_HINT)
        size, digest = hash_file(path, advance)
        if size != item.size or digest != item.sha256:
            raise BackupCorrupt(
                f"{item.path} does not match its sha256 in {MANIFEST}", hint=_CORRUPT_HINT
            )
