"""Decode untrusted audio bytes into mono :class:`PcmAudio`, enforcing caps as decoding goes.

The container is sniffed from magic bytes (see :mod:`avatar.audio.sniff`); WAV, FLAC and Ogg Vorbis
go through libsndfile, Ogg Opus, WebM, MP3, MP4/M4A and AAC through PyAV (FFmpeg). Everything is
read from memory. Byte size is checked first, header rate and channels before any sample is
decoded, and decoded frames are counted block by block, so a decompression bomb stops at the
duration cap instead of filling memory. Blocks are downmixed and resampled as they arrive: only
mono audio at the target rate is kept.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Final

import av
import numpy as np
import numpy.typing as npt
import soundfile as sf

from avatar.audio.pcm import PcmAudio, Samples
from avatar.audio.resample import StreamResampler
from avatar.audio.sniff import (
    FORMAT_HINT,
    Container,
    mp3_truncated,
    ogg_complete,
    sniff,
    wav_header,
)
from avatar.errors import AudioError, AudioTooLarge, EmptyAudio, UnsupportedAudioFormat

Block = npt.NDArray[np.float32]  # (frames, channels)

_BLOCK_FRAMES: Final = 16_384
_PYAV_FORMATS: Final = {
    Container.OGG_OPUS: "ogg",
    Container.WEBM: "matroska",
    Container.MP3: "mp3",
    Container.MP4: "mov",  # FFmpeg's demuxer for mov, mp4 and m4a
    Container.AAC: "aac",
}
_PYAV_CODECS: Final = frozenset(
    {"opus", "libopus", "vorbis", "mp3", "mp3float", "flac", "aac", "aac_fixed", "alac"}
)
# WebM durations are stored to the millisecond and Opus adds a pre-skip; a real cut loses more.
_WEBM_TOLERANCE_S: Final = 0.1


@dataclass(frozen=True, slots=True)
class AudioLimits:
    """Caps on untrusted audio input, enforced before and during decoding."""

    max_bytes: int = 25 * 1024 * 1024
    max_duration_s: float = 60.0
    max_sample_rate: int = 192_000
    max_channels: int = 8
    min_sample_rate: int = 8000


DEFAULT_LIMITS: Final = AudioLimits()


def decode_audio(
    data: bytes, *, limits: AudioLimits = DEFAULT_LIMITS, target_rate: int | None = 16_000
) -> PcmAudio:
    """Decode WAV, FLAC, Ogg Vorbis/Opus, WebM or MP3 bytes to mono float32 at ``target_rate``.

    ``target_rate=None`` keeps the file's own rate. Raises EmptyAudio, UnsupportedAudioFormat,
    AudioTooLarge or AudioError; never a library exception. Blocking (CPU-bound): call it from a
    worker thread, not the event loop.
    """
    if target_rate is not None and target_rate <= 0:
        raise ValueError(f"target_rate must be positive, got {target_rate}")
    if not data:
        raise EmptyAudio("the audio upload is empty (0 bytes)", hint=FORMAT_HINT)
    if len(data) > limits.max_bytes:
        raise AudioTooLarge(
            f"audio upload is {len(data):,} bytes, over the {limits.max_bytes:,}-byte limit",
            hint="send a shorter or more compressed recording",
        )
    container = sniff(data)
    _check_container(data, container, limits)
    if container in _PYAV_FORMATS:
        return _decode_pyav(data, container, limits, target_rate)
    return _decode_soundfile(data, container, limits, target_rate)


def _corrupt() -> AudioError:
    return AudioError(
        "could not decode audio: file is corrupt or truncated",
        hint="upload the complete file, or export it again",
    )


def _check_stream(rate: int, channels: int, limits: AudioLimits) -> None:
    if rate > limits.max_sample_rate:
        raise AudioTooLarge(
            f"sample rate {rate:,} Hz is over the {limits.max_sample_rate:,} Hz limit",
            hint=f"resample to {limits.max_sample_rate:,} Hz or less",
        )
    if rate < limits.min_sample_rate:
        raise AudioError(
            f"sample rate {rate:,} Hz is below the {limits.min_sample_rate:,} Hz minimum",
            hint="record at 16 kHz or more",
        )
    if channels > limits.max_channels:
        raise AudioTooLarge(
            f"audio has {channels} channels, over the limit of {limits.max_channels}",
            hint="downmix to mono or stereo",
        )
    if channels < 1:
        raise _corrupt()


def _check_container(data: bytes, container: Container, limits: AudioLimits) -> None:
    """Header facts and truncation that can be judged from the bytes alone, before decoding."""
    if container is Container.WAV:
        header = wav_header(data)
        if header is None:
            raise _corrupt()
        _check_stream(header.sample_rate, header.channels, limits)
        if header.data_size is not None and header.data_offset + header.data_size > len(data):
            raise _corrupt()
    elif container in (Container.OGG_OPUS, Container.OGG_VORBIS):
        if not ogg_complete(data):
            raise _corrupt()
    elif container is Container.MP3 and mp3_truncated(data):
        raise _corrupt()


class _Sink:
    """Counts decoded frames against the duration cap; keeps them as mono at the target rate."""

    def __init__(self, rate: int, limits: AudioLimits, target_rate: int | None) -> None:
        self.rate = rate
        self.frames = 0
        self._limits = limits
        self._max_frames = int(limits.max_duration_s * rate)
        self._resampler = StreamResampler(rate, target_rate or rate)
        self._parts: list[Samples] = []

    def add(self, block: Block) -> None:
        """Take the next ``(frames, channels)`` block, or raise once past a cap."""
        _check_stream(self.rate, block.shape[1], self._limits)
        self.frames += block.shape[0]
        if self.frames > self._max_frames:
            raise AudioTooLarge(
                f"audio is longer than the {self._limits.max_duration_s:g} s limit",
                hint=f"send at most {self._limits.max_duration_s:g} s at a time",
            )
        mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
        mono = np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)
        self._parts.append(self._resampler.process(mono))

    def finish(self) -> PcmAudio:
        if self.frames == 0:
            raise EmptyAudio("the audio holds no samples", hint="record some sound and send it")
        self._parts.append(self._resampler.process(np.zeros(0, np.float32), last=True))
        samples = np.concatenate(self._parts)
        np.clip(samples, -1.0, 1.0, out=samples)
        return PcmAudio(samples, self._resampler.out_rate)


def _decode_soundfile(
    data: bytes, container: Container, limits: AudioLimits, target_rate: int | None
) -> PcmAudio:
    try:
        with sf.SoundFile(io.BytesIO(data)) as audio_file:
            _check_stream(audio_file.samplerate, audio_file.channels, limits)
            sink = _Sink(audio_file.samplerate, limits, target_rate)
            while len(block := audio_file.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)):
                sink.add(block)
            declared = audio_file.frames
    except sf.SoundFileError as exc:
        raise _corrupt() from exc
    # FLAC's STREAMINFO states the exact sample count (0 when the encoder did not know it).
    if container is Container.FLAC and 0 < declared < 2**62 and sink.frames < declared:
        raise _corrupt()
    return sink.finish()


def _decode_pyav(
    data: bytes, container: Container, limits: AudioLimits, target_rate: int | None
) -> PcmAudio:
    try:
        # metadata_errors: tags that are not UTF-8 must not break decoding (found by fuzzing)
        with av.open(
            io.BytesIO(data), "r", format=_PYAV_FORMATS[container], metadata_errors="replace"
        ) as media:
            stream = _audio_stream(media, container)
            rate = stream.codec_context.sample_rate
            _check_stream(rate, stream.codec_context.channels, limits)
            sink = _Sink(rate, limits, target_rate)
            for packet in media.demux(stream):
                for frame in packet.decode():
                    if frame.sample_rate != rate:
                        raise AudioError(
                            "sample rate changes in the middle of the audio",
                            hint="export the recording again at one sample rate",
                        )
                    sink.add(_frame_block(frame))
            declared_us = media.duration if len(media.streams) == 1 else None
    except av.FFmpegError as exc:
        raise _corrupt() from exc
    if container is Container.WEBM and _short_of(sink.frames / rate, declared_us):
        raise _corrupt()
    return sink.finish()


def _short_of(decoded_s: float, declared_us: int | None) -> bool:
    return declared_us is not None and decoded_s < declared_us / 1e6 - _WEBM_TOLERANCE_S


def _audio_stream(media: av.container.InputContainer, container: Container) -> av.AudioStream:
    if not media.streams.audio:
        raise UnsupportedAudioFormat(
            f"unsupported audio format: the {container.value} file has no audio", hint=FORMAT_HINT
        )
    stream = media.streams.audio[0]
    if stream.codec_context is None:  # a codec FFmpeg does not know (found by fuzzing)
        raise UnsupportedAudioFormat(
            f"unsupported audio codec in {container.value}", hint=FORMAT_HINT
        )
    if stream.codec_context.name not in _PYAV_CODECS:
        raise UnsupportedAudioFormat(
            f"unsupported audio codec '{stream.codec_context.name}' in {container.value}",
            hint=FORMAT_HINT,
        )
    return stream


def _frame_block(frame: av.AudioFrame) -> Block:
    array = frame.to_ndarray()
    block = array.T if frame.format.is_planar else array.reshape(-1, frame.layout.nb_channels)
    if block.dtype.kind == "f":
        return block.astype(np.float32, copy=False)
    if block.dtype == np.uint8:
        return (block.astype(np.float32) - 128.0) / 128.0
    return block.astype(np.float32) / float(2 ** (8 * block.dtype.itemsize - 1))
