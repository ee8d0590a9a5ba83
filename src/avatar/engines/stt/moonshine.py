"""Moonshine speech-to-text (moonshine-voice 0.1.0, weights inside the wheel): English, streaming.

Measured on the 2-core build machine (tiny-en): load 0.3 s; beckett.wav (10 s) in 0.28 s,
two_cities.wav (44 s) in 1.7 s. A stream re-transcribes its open line at most every
``update_interval_s`` of fed audio, so partials cost about one small decode per interval.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soxr
from moonshine_voice import ModelArch, Transcriber, get_model_path

from avatar.audio.pcm import PcmAudio, Samples
from avatar.engines.base import SttCapabilities, Transcript
from avatar.engines.executor import ThreadedEngine
from avatar.errors import AudioError, EngineFailed, EngineUnavailable, ModelError

if TYPE_CHECKING:
    from avatar.models.store import ModelStore
    from avatar.settings import SttSettings

SAMPLE_RATE = 16_000
MIN_AUDIO_S = 0.1
PACKAGED_MODEL = "tiny-en"


def _check_language(language: str | None) -> None:
    if language is None:
        return
    primary = language.strip().lower().replace("_", "-").split("-")[0]
    if primary not in ("en", "english"):
        raise EngineUnavailable(
            f"moonshine is English-only; use faster-whisper for {language!r}",
            hint="set AVATAR_STT__ENGINE=faster-whisper for languages other than English",
            code="language_unsupported",
        )


class MoonshineStt(ThreadedEngine):
    """Moonshine tiny (English) with streaming partials; one transcriber shared by all streams.

    ``model_dir`` None uses the tiny-en model packaged in moonshine-voice; a folder of another
    Moonshine model works too (``arch`` must match it). Audio shorter than 0.1 s gives an empty
    transcript (``no_speech_probability`` 1.0), as with faster-whisper.
    """

    name = "moonshine"
    capabilities = SttCapabilities(streaming=True, languages=frozenset({"en"}))

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        arch: ModelArch = ModelArch.TINY,
        update_interval_s: float = 0.5,
    ) -> None:
        super().__init__()
        self._model_dir = model_dir
        self._arch = arch
        self.update_interval_s = update_interval_s
        self._transcriber: Any = None

    @classmethod
    def from_settings(cls, cfg: SttSettings, models: ModelStore) -> MoonshineStt:
        del models  # the weights ship inside moonshine-voice; no catalog entry to resolve
        local = Path(cfg.model).expanduser()
        if local.is_dir():
            arch = ModelArch.BASE if "base" in local.name else ModelArch.TINY
            return cls(local, arch=arch)
        return cls()

    def _load(self) -> None:
        folder = self._model_dir or get_model_path(PACKAGED_MODEL)
        if not folder.is_dir():
            raise ModelError(
                f"moonshine model folder {folder} does not exist",
                hint="reinstall: pip install --force-reinstall moonshine-voice==0.1.0",
                code="model_missing",
            )
        try:
            self._transcriber = Transcriber(str(folder), model_arch=self._arch)
        except Exception as exc:  # MoonshineError, OSError from the native library
            raise ModelError(
                f"moonshine could not load {folder}: {exc}",
                hint="reinstall: pip install --force-reinstall moonshine-voice==0.1.0",
                code="model_load_failed",
            ) from exc

    def _unload(self) -> None:
        if self._transcriber is not None:
            self._transcriber.close()
        self._transcriber = None

    async def transcribe(
        self, audio: PcmAudio, *, language: str | None = None, likely_language: str | None = None
    ) -> Transcript:
        _check_language(language)
        if audio.duration_s < MIN_AUDIO_S:
            return Transcript("", "en", audio.duration_s, no_speech_probability=1.0)
        return await self.run(self._transcribe_sync, audio)

    def _transcribe_sync(self, audio: PcmAudio) -> Transcript:
        samples = _mono_16k(audio)
        try:
            result = self._transcriber.transcribe_without_streaming(samples.tolist(), SAMPLE_RATE)
        except Exception as exc:
            raise EngineFailed(f"moonshine failed while transcribing: {exc}") from exc
        return _transcript(_text(result), len(samples) / SAMPLE_RATE)

    def open_stream(self, *, language: str | None = None) -> MoonshineStream:
        """A new stream; its native state is made on the first ``feed``."""
        _check_language(language)
        return MoonshineStream(self)


class MoonshineStream:
    """One utterance being transcribed while it arrives; partials are the whole text so far.

    Call ``finish()`` for the final transcript, or ``aclose()`` to abandon the stream
    (both free its native state).
    """

    def __init__(self, engine: MoonshineStt) -> None:
        self._engine = engine
        self._transcriber: Any = None
        self._stream: Any = None
        self._text = ""
        self._fed_s = 0.0
        self._since_update_s = 0.0
        self._done = False
        self._resampler: soxr.ResampleStream | None = None  # keeps filter state across chunks
        self._in_rate: int | None = None

    async def feed(self, audio: PcmAudio) -> str | None:
        if self._done:
            raise EngineFailed("this moonshine stream is finished; open a new one")
        if len(audio.samples) == 0:
            return None
        return await self._engine.run(self._feed_sync, audio)

    async def finish(self) -> Transcript:
        if self._done:
            raise EngineFailed("this moonshine stream is finished; open a new one")
        self._done = True
        return await self._engine.run(self._finish_sync)

    async def aclose(self) -> None:
        """Abandon the stream (barge-in, disconnect); a no-op after ``finish()``."""
        self._done = True
        if self._stream is not None:
            await self._engine.run(self._close_sync)

    def _feed_sync(self, audio: PcmAudio) -> str | None:
        stream, samples = self._native(), self._to_16k(audio)
        self._fed_s += audio.duration_s
        self._since_update_s += audio.duration_s
        try:
            stream.add_audio(samples.tolist(), SAMPLE_RATE)
            if self._since_update_s < self._engine.update_interval_s:
                return None
            self._since_update_s = 0.0
            text = _text(stream.update_transcription())
        except Exception as exc:
            self._done = True
            self._close_sync()
            raise EngineFailed(f"moonshine failed while streaming: {exc}") from exc
        if text == self._text:
            return None
        self._text = text
        return text

    def _finish_sync(self) -> Transcript:
        if self._stream is None:
            return _transcript("", self._fed_s)
        try:
            self._check_same_model()
            if self._resampler is not None:
                tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
                self._stream.add_audio(np.asarray(tail, np.float32).tolist(), SAMPLE_RATE)
            result = self._stream.stop()  # transcribes what is left; returns None on failure
        finally:
            self._close_sync()
        if result is None:
            raise EngineFailed("moonshine failed to finish the stream", retryable=True)
        return _transcript(_text(result), self._fed_s)

    def _native(self) -> Any:
        if self._stream is None:
            self._transcriber = self._engine._transcriber
            # Updates are driven by _feed_sync; an infinite interval turns off the library's own.
            self._stream = self._transcriber.create_stream(update_interval=math.inf)
            self._stream.start()
        self._check_same_model()
        return self._stream

    def _check_same_model(self) -> None:
        if self._transcriber is not self._engine._transcriber:
            self._stream, self._done = None, True  # its native state went with the transcriber
            raise EngineFailed(
                "the moonshine model was unloaded during this stream", retryable=True
            )

    def _to_16k(self, audio: PcmAudio) -> Samples:
        samples = np.ascontiguousarray(audio.samples, dtype=np.float32)
        if self._in_rate is None:
            self._in_rate = audio.sample_rate
            if audio.sample_rate != SAMPLE_RATE:
                self._resampler = soxr.ResampleStream(audio.sample_rate, SAMPLE_RATE, 1, "float32")
        if audio.sample_rate != self._in_rate:
            raise AudioError(
                f"the stream's sample rate changed from {self._in_rate} to {audio.sample_rate} Hz",
                hint="send one sample rate for the whole utterance",
            )
        if self._resampler is None:
            return samples
        return np.asarray(self._resampler.resample_chunk(samples), dtype=np.float32)

    def _close_sync(self) -> None:
        if self._stream is not None and self._transcriber is self._engine._transcriber:
            self._stream.close()
        self._stream = None


def _text(result: Any) -> str:
    return " ".join(line.text.strip() for line in result.lines if line.text.strip())


def _transcript(text: str, duration_s: float) -> Transcript:
    return Transcript(text, "en", duration_s, no_speech_probability=0.0 if text else 1.0)


def _mono_16k(audio: PcmAudio) -> Samples:
    samples = np.ascontiguousarray(audio.samples, dtype=np.float32)
    if audio.sample_rate == SAMPLE_RATE or len(samples) == 0:
        return samples
    return np.asarray(soxr.resample(samples, audio.sample_rate, SAMPLE_RATE), dtype=np.float32)
