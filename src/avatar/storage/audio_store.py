"""Audio files on disk: server-made names, atomic writes, and no path that leaves the root.

A stored file is named by a relative path ``"<category>/<uuid4 hex><suffix>"``; the database keeps
only that path. Writes go to a temp file in the same folder, are fsynced, renamed into place and
the folder fsynced, so a crash leaves either the whole file or a stale temp file (see
:meth:`AudioStore.orphans`), never a torn one.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import Literal, get_args

from avatar.storage.errors import InvalidInput, NotFound, StorageError, UnsafePath

Category = Literal["raw", "profiles", "tts_fast", "tts_hq", "exports"]
CATEGORIES: tuple[str, ...] = get_args(Category)
SUFFIXES = frozenset({".wav", ".ogg", ".opus", ".flac", ".mp3", ".webm", ".zip", ".json", ".md"})
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".part"
_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_suffix(suffix: str) -> str:
    suffix = suffix.lower() if suffix.startswith(".") else "." + suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInput(
            f"file type {suffix!r} is not stored", hint=f"use one of {', '.join(sorted(SUFFIXES))}"
        )
    return suffix


class AudioStore:
    """Files under ``root``, one folder per category, addressed by relative paths only."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        for category in CATEGORIES:
            (self.root / category).mkdir(parents=True, exist_ok=True)

    def save(self, category: Category, data: bytes, suffix: str) -> str:
        """Write ``data`` atomically under a new server-made name; returns the relative path."""
        if category not in CATEGORIES:
            raise InvalidInput(f"unknown audio category {category!r}")
        suffix = check_suffix(suffix)
        folder = self.root / category
        name = uuid.uuid4().hex + suffix
        temp = folder / f"{TEMP_PREFIX}{uuid.uuid4().hex}{TEMP_SUFFIX}"
        try:
            with temp.open("xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, folder / name)
            _fsync_dir(folder)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise StorageError(
                f"cannot write audio file: {exc.strerror or exc}",
                hint=f"check free space and permissions of {folder}",
            ) from exc
        return f"{category}/{name}"

    def path(self, rel: str) -> Path:
        """The absolute path of a stored file; refuses anything that could leave the root."""
        if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
            raise UnsafePath(f"invalid audio path {rel!r}")
        parts = PurePosixPath(rel).parts
        if len(parts) != 2 or parts[0] not in CATEGORIES or not _NAME.fullmatch(parts[1]):
            raise UnsafePath(
                f"invalid audio path {rel!r}", hint="expected '<category>/<name>' from the server"
            )
        if parts[1] in {".", ".."}:
            raise UnsafePath(f"invalid audio path {rel!r}")
        folder = (self.root / parts[0]).resolve()
        resolved = (folder / parts[1]).resolve()
        if resolved.parent != folder:  # a symlinked file pointing elsewhere
            raise UnsafePath(f"audio path {rel!r} leads outside the audio folder")
        return resolved

    def open_path(self, rel: str) -> Path:
        """Like :meth:`path`, but the file must exist (:class:`NotFound` otherwise)."""
        resolved = self.path(rel)
        if not resolved.is_file():
            raise NotFound(f"audio file {rel!r} not found")
        return resolved

    def delete(self, rel: str) -> bool:
        """Remove a stored file; returns False when it was already gone."""
        target = self.path(rel)
        try:
            target.unlink()
        except FileNotFoundError:
            return False
        except IsADirectoryError as exc:
            raise UnsafePath(f"audio path {rel!r} is not a file") from exc
        return True

    def orphans(self, known: set[str], *, temp_age_s: float = 3600.0) -> list[str]:
        """Stored files not in ``known``, plus temp files older than ``temp_age_s``."""
        cutoff = time.time() - temp_age_s
        found: list[str] = []
        for category in CATEGORIES:
            for entry in sorted((self.root / category).iterdir()):
                rel = f"{category}/{entry.name}"
                if not entry.is_file() or entry.is_symlink() or rel in known:
                    continue
                if entry.name.startswith(TEMP_PREFIX) and entry.stat().st_mtime > cutoff:
                    continue  # a save in progress
                found.append(rel)
        return sorted(found)
