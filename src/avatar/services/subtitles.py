"""Timed transcripts for files: segments from the engine, and SRT / WebVTT renderings of them."""

from __future__ import annotations

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import SpeechToText, TimedSegment, TimedTranscript


async def timed_transcript(
    stt: SpeechToText, audio: PcmAudio, *, language: str | None, words: bool
) -> TimedTranscript:
    """The engine's timed transcript; an engine without timestamps gives one segment spanning
    the audio (``words`` then stays empty: :func:`has_word_timestamps` says so beforehand)."""
    timed = getattr(stt, "transcribe_timed", None)
    if timed is not None:
        result: TimedTranscript = await timed(audio, language=language, words=words)
        return result
    plain = await stt.transcribe(audio, language=language)
    text = plain.text.strip()
    whole = (TimedSegment(0.0, round(plain.duration_s, 2), text),) if text else ()
    return TimedTranscript(text, plain.language, plain.duration_s, whole)


def has_word_timestamps(stt: SpeechToText) -> bool:
    return getattr(stt, "transcribe_timed", None) is not None


def srt(segments: tuple[TimedSegment, ...]) -> str:
    cues = [
        f"{n}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n"
        for n, s in enumerate(segments, 1)
    ]
    return "\n".join(cues)


def vtt(segments: tuple[TimedSegment, ...]) -> str:
    cues = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def _clock(seconds: float, decimal: str) -> str:
    millis = round(max(seconds, 0.0) * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"
