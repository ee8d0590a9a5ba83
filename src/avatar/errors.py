"""Errors that users see: each has a stable code, a message that names the problem, and a fix.

The API maps them to problem+json responses and WebSocket ``error`` events; the CLI prints them
without a traceback.
"""

from __future__ import annotations

from avatar.redaction import strip_credentials


class AvatarError(Exception):
    """Base of every error meant for a user. ``code`` is stable; ``hint`` says how to fix it."""

    code = "internal_error"
    http_status = 500

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        # No password of a URL (a remote engine's, a database's) reaches a user or a log.
        message = strip_credentials(message)
        hint = strip_credentials(hint) if hint else hint
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(AvatarError):
    """Settings are invalid or inconsistent."""

    code = "config_invalid"


class ModelError(AvatarError):
    """A model cannot be found, joined, verified or loaded."""

    code = "model_error"
    http_status = 503


class ModelPackageMissing(ModelError):
    """A package that carries a model's files is not installed."""

    code = "model_package_missing"


class ModelHashMismatch(ModelError):
    """A model file's size or sha256 differs from the catalog's."""

    code = "model_hash_mismatch"


class EngineUnavailable(AvatarError):
    """An engine cannot be used: its extra is missing, it is not configured, or it is down."""

    code = "engine_unavailable"
    http_status = 503


class EngineTimeout(AvatarError):
    """An engine did not answer within its deadline."""

    code = "engine_timeout"
    http_status = 504


class EngineFailed(AvatarError):
    """An engine answered with an error or broke off mid-stream."""

    code = "engine_failed"
    http_status = 502

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        code: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, hint=hint, code=code)
        self.retryable = retryable


class AudioError(AvatarError):
    """Audio input that cannot be used."""

    code = "audio_invalid"
    http_status = 422


class UnsupportedAudioFormat(AudioError):
    """The bytes are not audio in a format AVATAR decodes."""

    code = "audio_unsupported_format"
    http_status = 415


class AudioTooLarge(AudioError):
    """The audio is over a size, duration, sample-rate or channel cap."""

    code = "audio_too_large"
    http_status = 413


class EmptyAudio(AudioError):
    """The audio holds no samples (or no speech where speech is needed)."""

    code = "audio_empty"
    http_status = 422
