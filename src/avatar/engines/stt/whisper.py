"""Whisper speech-to-text through faster-whisper (CTranslate2): multilingual, detects the language.

Measured on the shared 2-core build machine (whisper-base, int8, 2 threads, beckett.wav 10 s):
load 0.3-0.4 s (plus ~0.5 s to verify the joined model once per process); ~0.65 s per
utterance with the language given on a quiet machine. ``WhisperModel.transcribe(language=None)``
encodes the first 30 s window twice, once to detect the language and again to decode: 1.10 s
vs 0.66 s quiet (MODELS.md: p50 1.27 s vs 0.70 s). This engine encodes once and reads the
language off that encoder output, so auto-detection costs one decoder step: in one loaded run,
1.00 s (ours, auto) vs 0.92 s (language given) vs 1.90 s (library auto-detect).

By default the encoder sees only the utterance plus 1 s instead of 30 s (``whisper_trim``; setting
``stt.trim``), which makes both the decode and the language detection several times cheaper; its
guard falls back to the padded path above. Figures: ``avatar bench stt``, docs/BENCHMARKS.md.

The two paths want different thread counts on a small CPU: the trimmed decode's small matrices
ran faster on one thread than on two, the 30 s pass much slower. On CPU the engine can load the
model twice (``stt.trimmed_threads``), one instance per path.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soxr
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

from avatar.audio.pcm import PcmAudio, Samples
from avatar.engines.base import SttCapabilities, TimedTranscript, Transcript
from avatar.engines.executor import Cancelled, ThreadedEngine
from avatar.engines.stt import whisper_trim as wt
from avatar.engines.stt.timestamps import timed_transcript
from avatar.errors import EmptyAudio, EngineFailed, EngineUnavailable, ModelError
from avatar.system.cuda import oom_guard

if TYPE_CHECKING:
    from avatar.models.store import ModelStore
    from avatar.settings import SttSettings

log = logging.getLogger(__name__)
SAMPLE_RATE = wt.SAMPLE_RATE
# Below this there is nothing to transcribe; Whisper pads to 30 s and tends to hallucinate.
MIN_AUDIO_S = 0.1


def primary_language(tag: str) -> str:
    """``"en-US"`` / ``"zh_CN"`` / ``"EN"`` -> ``"en"`` / ``"zh"`` / ``"en"``."""
    return tag.strip().lower().replace("_", "-").split("-")[0]


class FasterWhisperStt(ThreadedEngine):
    """Whisper (any CTranslate2 conversion) on CPU or CUDA; batch only.

    ``transcribe(language=None)`` detects the language (returned in ``Transcript.language``)
    unless the settings force one. Audio shorter than 0.1 s gives an empty transcript with
    ``no_speech_probability`` 1.0 rather than an error: a stray click in a live session is
    not a failure. ``no_speech_probability`` is the mean over Whisper's 30 s windows.
    """

    name = "faster-whisper"
    capabilities = SttCapabilities(streaming=False, languages=None, detects_language=True)

    def __init__(
        self,
        model: str,
        models: ModelStore,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        threads: int = 2,
        language: str | None = None,
        beam_size: int = 1,
        trim: bool = True,
        trimmed_threads: int | None = None,
    ) -> None:
        super().__init__()
        self._model_name = model
        self._models = models
        self._device = device
        self._compute_type = compute_type
        self._threads = threads
        self._language = primary_language(language) if language else None
        self._beam_size = beam_size
        self._trim = trim
        self._trimmed_threads = trimmed_threads or threads
        self._model: Any = None  # padded decodes, timed transcripts, language detection
        self._trimmed: Any = None  # the trimmed decode: the same model unless its threads differ

    @classmethod
    def from_settings(cls, cfg: SttSettings, models: ModelStore) -> FasterWhisperStt:
        return cls(
            cfg.model,
            models,
            device=cfg.device,
            compute_type=cfg.compute_type,
            threads=cfg.threads,
            language=cfg.language,
            trim=cfg.trim,
            trimmed_threads=cfg.trimmed_threads,
        )

    def _load(self) -> None:
        path = self._models.path(self._model_name)
        if not path.is_dir():  # WhisperModel treats anything else as a hub id and downloads
            raise ModelError(
                f"faster-whisper needs a model folder (model.bin, config.json, tokenizer.json),"
                f" got {path}",
                hint="point AVATAR_STT__MODEL at a CTranslate2 Whisper folder or a catalog name",
                code="model_invalid",
            )
        try:
            self._trimmed, self._model = load_instances(
                path,
                threads=self._threads,
                trimmed_threads=self._trimmed_threads if self._trim else self._threads,
                device=self._device,
                compute_type=self._compute_type,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(
                f"faster-whisper could not load {path} on {self._device} ({self._compute_type}):"
                f" {exc}",
                hint="check AVATAR_STT__MODEL, AVATAR_STT__DEVICE and AVATAR_STT__COMPUTE_TYPE"
                " (int8 on cpu, float16 on cuda)",
                code="model_load_failed",
            ) from exc

    def _unload(self) -> None:
        self._model = self._trimmed = None

    async def transcribe_timed(
        self, audio: PcmAudio, *, language: str | None = None, words: bool = False
    ) -> TimedTranscript:
        """The transcript with segment (and, with ``words``, word) timestamps: files, not turns."""
        lang = primary_language(language) if language else self._language
        with oom_guard("faster-whisper"):
            return await self.run(timed_transcript, self._model, _mono_16k(audio), lang, words)

    async def transcribe(
        self, audio: PcmAudio, *, language: str | None = None, likely_language: str | None = None
    ) -> Transcript:
        lang = primary_language(language) if language else self._language
        likely = primary_language(likely_language) if likely_language else None
        if audio.duration_s < MIN_AUDIO_S:
            return Transcript("", lang, audio.duration_s, no_speech_probability=1.0)
        with oom_guard("faster-whisper"):  # CUDA OOM: memory freed, 503 with Retry-After
            # a held reply dropped mid-transcript stops before the padded pass (~1 s here)
            return await self.run_cancellable(self._transcribe_sync, audio, lang, likely)

    async def detect_language(self, audio: PcmAudio) -> tuple[str, float]:
        """The most likely language of the first 30 s of ``audio`` and its probability."""
        if audio.duration_s < MIN_AUDIO_S:
            raise EmptyAudio(
                f"{audio.duration_s:.2f} s of audio is too short to detect a language",
                hint="send at least a second of speech",
            )
        return await self.run(self._detect_sync, audio)

    def _detect_sync(self, audio: PcmAudio) -> tuple[str, float]:
        lang, prob, _ = self._model.detect_language(_mono_16k(audio))
        return str(lang), float(prob)

    def _transcribe_sync(
        self,
        cancel: threading.Event,
        audio: PcmAudio,
        language: str | None,
        likely: str | None = None,
    ) -> Transcript:
        model, samples = self._model, _mono_16k(audio)
        trimmed = self._trimmed or model
        if language is not None and language not in model.supported_languages:
            raise EngineUnavailable(
                f"this Whisper model does not know the language {language!r}",
                hint="use an ISO 639-1 code Whisper supports (en, zh, de, fr, ...) or none to"
                " detect it",
            )
        detected = language is None
        try:
            out = decode(
                trimmed, samples, language, self._beam_size, self._trim, likely, model, cancel
            )
        except RuntimeError as exc:
            raise EngineFailed(f"faster-whisper failed while transcribing: {exc}") from exc
        # a language "detected" in silence or noise means nothing
        language = out.language if out.text or not detected else None
        return Transcript(out.text, language, len(samples) / SAMPLE_RATE, out.no_speech_prob)


def load_instances(
    path: Path,
    *,
    threads: int,
    trimmed_threads: int,
    device: str = "cpu",
    compute_type: str = "int8",
) -> tuple[Any, Any]:
    """The model for the trimmed decode and the one for the padded pass (on ``threads``): on a
    CPU a second instance on ``trimmed_threads`` when they differ, else the same one twice."""
    kind, _, index = device.partition(":")

    def load(cpu_threads: int) -> Any:
        return WhisperModel(
            str(path),
            device=kind,
            device_index=int(index or 0),
            compute_type=compute_type,
            cpu_threads=cpu_threads,
        )

    padded = load(threads)
    own = kind == "cpu" and trimmed_threads != threads
    return (load(trimmed_threads) if own else padded), padded


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one transcription did: text, language, and whether the trimmed decode was kept."""

    language: str
    text: str
    no_speech_prob: float
    trimmed: bool
    fallback: str | None = None  # why the trimmed decode was sent back (guard reason)
    rejected: str | None = None  # what the trimmed decode first said, when sent back or said again


def decode(
    model: Any,
    samples: Samples,
    language: str | None,
    beam: int,
    trim: bool = True,
    likely: str | None = None,
    padded_model: Any = None,
    cancel: threading.Event | None = None,
) -> Decoded:
    """Transcribe ``samples``: trimmed first when ``trim`` and it fits, else (or if the guard
    trips) the padded decode (on ``padded_model`` when given: another instance of the model with
    its own threads). Both detect the language from their own single encoder pass.

    A language detected on the short window with less than ``MIN_LANGUAGE_P`` is checked by the
    padded pass, unless it is the ``likely`` one (the conversation's so far): a short "Try again."
    is English at 0.58, and the user who spoke English a moment ago most likely still does. Both
    passes keep the likely language unless another is ``LIKELY_WEIGHT`` times as probable.
    English (given or likely) is decoded from just before its first sound (``without_lead``),
    unless the cut window turns out to be another language;
    Mandarin's trimmed decode searches with a beam (``TRIMMED_BEAM``). Once ``cancel`` is set
    (the caller went away: a held reply the user talked over) neither the trimmed decoder nor
    the padded decode is begun: :class:`~avatar.engines.executor.Cancelled` instead."""
    reason = rejected = None
    cut_lead = trim and (language or likely) in wt.LEAD_TRIMMED
    speech = wt.without_lead(samples) if cut_lead else samples
    if trim and wt.trimmable(speech):
        encoder_output = model.encode(wt.window(model, speech))
        _stop_if_cancelled(cancel)  # the decoder takes ~2/3 of a trimmed transcript's time
        lang, p = (language, 1.0) if language else wt.detect_language(model, encoder_output, likely)
        if lang not in wt.LEAD_TRIMMED and len(speech) < len(samples) and wt.trimmable(samples):
            # The user switched from English: this language keeps its lead (Mandarin after an
            # English turn read 洗澡你 for 希望你 without it). One more encoder pass, only then.
            speech = samples
            encoder_output = model.encode(wt.window(model, speech))
            lang, p = wt.detect_language(model, encoder_output, likely)
        reason = "uncertain_language" if p < wt.MIN_LANGUAGE_P and lang != likely else None
        if reason is None:
            tokenizer = _tokenizer(model, lang)
            duration = len(speech) / SAMPLE_RATE
            options = _options(tokenizer, max(beam, wt.TRIMMED_BEAM.get(lang, 1)))
            result = wt.decode_trimmed(model, encoder_output, lang, tokenizer, options, duration)
            if result.text is not None:
                return Decoded(
                    lang, result.text, result.no_speech_prob, True, rejected=result.rejected
                )
            reason, rejected = result.reason, result.rejected
        log.info("trimmed Whisper decode sent back (%s); decoding padded", reason)
        log.debug("the trimmed decode had said %r", rejected)
    _stop_if_cancelled(cancel)
    model = padded_model or model
    features = model.feature_extractor(samples)
    lang, segments = _decode_padded(model, features, language, beam, likely)
    text = " ".join(s.text.strip() for s in segments if s.text.strip())
    no_speech = float(np.mean([s.no_speech_prob for s in segments])) if segments else 1.0
    return Decoded(lang, text, no_speech, False, reason, rejected)


def _stop_if_cancelled(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("nobody waits for this transcript any more")


def _tokenizer(model: Any, language: str) -> Tokenizer:
    return Tokenizer(model.hf_tokenizer, model.model.is_multilingual, "transcribe", language)


def _decode_padded(
    model: Any, features: np.ndarray, language: str | None, beam: int, likely: str | None = None
) -> tuple[str, list[Any]]:
    """Transcribe with one encoder pass for the first 30 s window, detecting the language from it.

    Mirrors ``WhisperModel.transcribe`` (faster-whisper 1.2.1) minus its separate detection
    encode; ``generate_segments`` accepts the first window's encoder output for this reuse.
    """
    first = features[:, : min(model.feature_extractor.nb_max_frames, features.shape[-1] - 1)]
    encoder_output = model.encode(pad_or_trim(first))
    language = language or wt.detect_language(model, encoder_output, likely)[0]
    tokenizer = _tokenizer(model, language)
    options = _options(tokenizer, beam)
    segments = list(model.generate_segments(features, tokenizer, options, False, encoder_output))
    return language, segments


def _options(tokenizer: Any, beam: int) -> Any:
    """``TranscriptionOptions`` as ``transcribe()`` builds them, with our choices marked."""
    return TranscriptionOptions(
        beam_size=beam,  # ours: greedy by default, latency first
        best_of=5,
        patience=1,
        length_penalty=1,
        repetition_penalty=1,
        no_repeat_ngram_size=0,
        log_prob_threshold=-1.0,
        no_speech_threshold=0.6,
        compression_ratio_threshold=2.4,
        condition_on_previous_text=False,  # ours: utterances are independent
        prompt_reset_on_temperature=0.5,
        temperatures=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        initial_prompt=None,
        prefix=None,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        without_timestamps=True,  # ours: text only, fewer decoder steps
        max_initial_timestamp=1.0,
        word_timestamps=False,
        prepend_punctuations="\"'“¿([{-",
        append_punctuations="\"'.。,，!！?？:：”)]}、",
        multilingual=False,
        max_new_tokens=None,
        clip_timestamps="0",
        hallucination_silence_threshold=None,
        hotwords=None,
    )


def _mono_16k(audio: PcmAudio) -> Samples:
    samples = np.ascontiguousarray(audio.samples, dtype=np.float32)
    if audio.sample_rate == SAMPLE_RATE or len(samples) == 0:
        return samples
    return np.asarray(soxr.resample(samples, audio.sample_rate, SAMPLE_RATE), dtype=np.float32)
