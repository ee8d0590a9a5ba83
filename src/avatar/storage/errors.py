"""Errors the storage layer raises; each is an :class:`AvatarError` with a stable code."""

from __future__ import annotations

from avatar.errors import AvatarError


class NotFound(AvatarError):
    """A session, turn, voice profile or file with that id does not exist."""

    code = "not_found"
    http_status = 404


class Conflict(AvatarError):
    """The change clashes with stored data (a voice profile name already in use)."""

    code = "conflict"
    http_status = 409


class InvalidInput(AvatarError):
    """A value the storage layer refuses: a malformed id, a name too long, bad paging."""

    code = "invalid_input"
    http_status = 422


class UnsafePath(InvalidInput):
    """An audio path that is malformed or points outside the audio folder."""

    code = "unsafe_path"
    http_status = 400


class StorageError(AvatarError):
    """The database or the disk failed (unreachable, locked, full, read-only)."""

    code = "storage_error"
    http_status = 503
