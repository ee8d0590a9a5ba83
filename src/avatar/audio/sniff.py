"""Recognise an audio container by its magic bytes and read the header facts decoding must check.

Nothing here trusts a file name or a client's content type: the first bytes decide. The header
readers are small and strict on purpose, so forged sizes and rates are caught before a decoding
library allocates anything.
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass
from enum import StrEnum

from avatar.errors import UnsupportedAudioFormat

SUPPORTED_FORMATS = (
    "WAV, FLAC, Ogg Vorbis, Ogg Opus, WebM (Opus or Vorbis), MP3, M4A/MP4 (AAC) or AAC (ADTS)"
)
FORMAT_HINT = f"send {SUPPORTED_FORMATS} audio"

# WAV data sizes at or above this are placeholders written by streaming recorders.
_WAV_UNKNOWN_SIZE = 0x7FFF0000

_NOT_AUDIO: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive"),
    (b"#EXTM3U", "an M3U/HLS playlist"),
    (b"[playlist]", "a PLS playlist"),
    (b"<", "an HTML or XML document"),
    (b"{", "a JSON document"),
)


class Container(StrEnum):
    """The audio containers (and Ogg codecs) AVATAR decodes."""

    WAV = "wav"
    FLAC = "flac"
    OGG_VORBIS = "ogg-vorbis"
    OGG_OPUS = "ogg-opus"
    WEBM = "webm"
    MP3 = "mp3"
    MP4 = "mp4"  # also .m4a: the ISO media file, AAC (or ALAC) inside
    AAC = "aac"  # raw AAC in ADTS frames (what OpenAI's "aac" speech format is)


@dataclass(frozen=True, slots=True)
class WavHeader:
    """The ``fmt `` facts of a WAV file and where its samples are; ``data_size`` None: unknown."""

    sample_rate: int
    channels: int
    data_offset: int
    data_size: int | None


@dataclass(frozen=True, slots=True)
class Mp3Frame:
    """One MPEG-1/2/2.5 Layer III frame header."""

    mpeg1: bool
    mono: bool
    length: int


def sniff(data: bytes) -> Container:
    """The container of ``data``; raises UnsupportedAudioFormat for anything else."""
    start = id3v2_end(data)
    head = data[start : start + 16]
    if data[:4] in (b"RIFF", b"RF64") and data[8:12] == b"WAVE":
        return Container.WAV
    if head.startswith(b"fLaC"):
        return Container.FLAC
    if data.startswith(b"OggS"):
        return _ogg_codec(data)
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return Container.WEBM
    if _looks_like_mp3(data, start):
        return Container.MP3
    if data[4:8] == b"ftyp":
        return Container.MP4
    if data[:2] in (b"\xff\xf1", b"\xff\xf9") and _adts_chained(data):
        return Container.AAC
    raise UnsupportedAudioFormat(f"unsupported audio format: {_describe(data)}", hint=FORMAT_HINT)


def _describe(data: bytes) -> str:
    stripped = data.lstrip()
    for magic, what in _NOT_AUDIO:
        if stripped.startswith(magic):
            return f"the data looks like {what}"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data[:512], final=False)
    except UnicodeDecodeError:
        return "the data is not in an audio format AVATAR knows"
    return "the data looks like text"


def _adts_chained(data: bytes) -> bool:
    """Two ADTS frame headers in a row (one alone is too easily random bytes)."""
    length = ((data[3] & 3) << 11) | (data[4] << 3) | (data[5] >> 5) if len(data) > 6 else 0
    return length >= 7 and data[length : length + 2] in (b"\xff\xf1", b"\xff\xf9", b"")


def _ogg_codec(data: bytes) -> Container:
    body = data[27 + data[26] : 27 + data[26] + 8] if len(data) > 27 else b""
    if body.startswith(b"OpusHead"):
        return Container.OGG_OPUS
    if body.startswith(b"\x01vorbis"):
        return Container.OGG_VORBIS
    raise UnsupportedAudioFormat(
        "unsupported audio format: Ogg holds neither Vorbis nor Opus audio", hint=FORMAT_HINT
    )


def id3v2_end(data: bytes) -> int:
    """Offset just past a leading ID3v2 tag (0 if there is none)."""
    if not data.startswith(b"ID3") or len(data) < 10:
        return 0
    size = 0
    for byte in data[6:10]:
        size = (size << 7) | (byte & 0x7F)
    footer = 10 if data[5] & 0x10 else 0
    return 10 + size + footer


def _looks_like_mp3(data: bytes, start: int) -> bool:
    first = mp3_frame(data, start)
    if first is None:
        return False
    # Without an ID3 tag two chained frame headers are needed, so random bytes rarely pass.
    return start > 0 or mp3_frame(data, start + first.length) is not None


_MP3_KBPS_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MP3_KBPS_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_MP3_RATES_V1 = (44100, 48000, 32000)


def mp3_frame(data: bytes, pos: int) -> Mp3Frame | None:
    """The Layer III frame header at ``pos``, or None if there is none."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    version, layer = (data[pos + 1] >> 3) & 3, (data[pos + 1] >> 1) & 3
    kbps_index, rate_index = data[pos + 2] >> 4, (data[pos + 2] >> 2) & 3
    if version == 1 or layer != 1 or kbps_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = version == 3
    kbps = (_MP3_KBPS_V1 if mpeg1 else _MP3_KBPS_V2)[kbps_index]
    rate = _MP3_RATES_V1[rate_index] // (1 if mpeg1 else 2 if version == 2 else 4)
    padding = (data[pos + 2] >> 1) & 1
    length = (144 if mpeg1 else 72) * kbps * 1000 // rate + padding
    return Mp3Frame(mpeg1=mpeg1, mono=data[pos + 3] >> 6 == 3, length=length)


def mp3_truncated(data: bytes) -> bool:
    """True if a Xing/Info header declares more bytes than the file holds."""
    start = id3v2_end(data)
    frame = mp3_frame(data, start)
    if frame is None:
        return False
    side_info = (17 if frame.mono else 32) if frame.mpeg1 else (9 if frame.mono else 17)
    tag = start + 4 + side_info
    if data[tag : tag + 4] not in (b"Xing", b"Info") or len(data) < tag + 16:
        return False
    (flags,) = struct.unpack_from(">I", data, tag + 4)
    if not flags & 2:
        return False
    (declared,) = struct.unpack_from(">I", data, tag + 8 + (4 if flags & 1 else 0))
    return bool(len(data) - start < declared)


def ogg_complete(data: bytes) -> bool:
    """True if ``data`` is a whole number of well-formed Ogg pages (none cut short)."""
    pos, end = 0, len(data)
    while pos < end:
        if data[pos : pos + 4] != b"OggS" or pos + 27 > end:
            return False
        segments = data[pos + 26]
        if pos + 27 + segments > end:
            return False
        pos += 27 + segments + sum(data[pos + 27 : pos + 27 + segments])
    return pos == end


def wav_header(data: bytes) -> WavHeader | None:
    """The WAV header facts, or None if the chunks are malformed or ``fmt ``/``data`` is missing."""
    fmt: tuple[int, int] | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk == b"fmt " and size >= 16 and pos + 16 <= len(data):
            channels, rate = struct.unpack_from("<HI", data, pos + 10)
            fmt = (rate, channels)
        elif chunk == b"data":
            if fmt is None:
                return None
            known = size if size < _WAV_UNKNOWN_SIZE and data[:4] == b"RIFF" else None
            return WavHeader(fmt[0], fmt[1], pos + 8, known)
        pos += 8 + size + (size & 1)
    return None
