"""Whisper with timestamps, for whole files (``/v1/audio/transcriptions``), not voice turns.

Voice turns decode without timestamps (faster); a file's transcript needs where each segment, and
on request each word, lies in the audio, for ``verbose_json``, SRT and WebVTT. This is
faster-whisper's own long-form transcription (30 s windows, timestamps on).
"""

from __future__ import annotations

from typing import Any

from avatar.audio.pcm import Samples
from avatar.engines.base import TimedSegment, TimedTranscript, TimedWord
from avatar.errors import EngineFailed

SAMPLE_RATE = 16_000


def timed_transcript(
    model: Any, samples: Samples, language: str | None, words: bool
) -> TimedTranscript:
    try:
        segments, info = model.transcribe(
            samples,
            language=language,
            beam_size=1,
            word_timestamps=words,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        timed = tuple(_segment(s) for s in segments if s.text.strip())
    except RuntimeError as exc:
        raise EngineFailed(f"faster-whisper failed while transcribing: {exc}") from exc
    text = " ".join(s.text for s in timed)
    return TimedTranscript(
        text, info.language if timed else language, len(samples) / SAMPLE_RATE, timed
    )


def _segment(segment: Any) -> TimedSegment:
    words = tuple(
        TimedWord(round(w.start, 2), round(w.end, 2), w.word.strip())
        for w in (segment.words or ())
        if w.word.strip()
    )
    return TimedSegment(
        round(segment.start, 2),
        round(segment.end, 2),
        segment.text.strip(),
        words,
        avg_logprob=float(segment.avg_logprob),
        compression_ratio=float(segment.compression_ratio),
        no_speech_prob=float(segment.no_speech_prob),
    )
