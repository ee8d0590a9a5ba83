"""Live partial transcripts of the utterance in progress (streaming STT engines only)."""

from __future__ import annotations

import contextlib

import numpy as np

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import SpeechToText, SttStream
from avatar.errors import AvatarError
from avatar.pipeline.utterance import SAMPLE_RATE_IN


class PartialTranscripts:
    """Streams one utterance into a streaming STT engine; :meth:`feed` returns new partial text.

    A batch engine (Whisper) gives finals only: :meth:`open` does nothing and the stream stays
    closed.
    """

    def __init__(self) -> None:
        self._stream: SttStream | None = None

    @property
    def active(self) -> bool:
        return self._stream is not None

    def open(self, stt: SpeechToText, language: str | None) -> bool:
        """Start a stream for a new utterance; whether the engine streams in this language."""
        open_stream = getattr(stt, "open_stream", None)
        if open_stream is None or not stt.capabilities.streaming:
            return False
        try:
            self._stream = open_stream(language=language)
        except AvatarError:
            return False  # e.g. an English-only engine in another language: finals only
        return True

    async def feed(self, samples: np.ndarray) -> str | None:
        """The partial transcript after ``samples``, or None when there is nothing new to show."""
        if self._stream is None or not len(samples):
            return None
        text = await self._stream.feed(PcmAudio(samples, SAMPLE_RATE_IN))
        return text.strip() if text and text.strip() else None

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.aclose()
