"""Audio input/output: every format decoded from memory, resampling, encoding, and hostile input."""

from __future__ import annotations

import io
import struct
import tracemalloc
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
import pytest
import soundfile as sf

from avatar.audio.decode import AudioLimits, decode_audio
from avatar.audio.edges import sound_span, trim_edges, without_leading_silence
from avatar.audio.encode import encode_flac, encode_opus, encode_wav
from avatar.audio.pcm import PcmAudio
from avatar.audio.resample import StreamResampler, resample
from avatar.errors import AudioError, AudioTooLarge, EmptyAudio, UnsupportedAudioFormat

FREQ = 440.0


def tone(seconds: float, rate: int, freq: float = FREQ) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def with_soundfile(x: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    out = io.BytesIO()
    sf.write(out, x, rate, format=fmt, subtype=subtype)
    return out.getvalue()


def with_pyav(
    x: np.ndarray, rate: int, fmt: str, codec: str, options: dict[str, str] | None = None
) -> bytes:
    """Encode ``x`` (frames,) or (frames, channels) with FFmpeg through PyAV."""
    planar = x.reshape(len(x), -1).T.copy()
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    out = io.BytesIO()
    with av.open(out, "w", format=fmt, options=options or {}) as media:
        stream = media.add_stream(codec, rate=48_000 if "opus" in codec else rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        for item in (frame, None):
            for packet in stream.encode(item):
                media.mux(packet)
    return out.getvalue()


def remux(data: bytes, fmt: str) -> bytes:
    """Copy the audio packets of ``data`` into a ``fmt`` container, without re-encoding."""
    out = io.BytesIO()
    with av.open(io.BytesIO(data), "r") as src, av.open(out, "w", format=fmt) as dst:
        source = src.streams.audio[0]
        target = dst.add_stream_from_template(source)
        for packet in src.demux(source):
            if packet.dts is None:
                continue
            if packet.duration and packet.duration > 2**31:  # Ogg's end trim, as a wrapped uint
                packet.duration = 0
            packet.stream = target
            dst.mux(packet)
    return out.getvalue()


MAKERS: dict[str, Callable[[np.ndarray, int], bytes]] = {
    "wav": lambda x, r: with_soundfile(x, r, "WAV", "PCM_16"),
    "wav-float": lambda x, r: with_soundfile(x, r, "WAV", "FLOAT"),
    "flac": lambda x, r: with_soundfile(x, r, "FLAC", "PCM_16"),
    "ogg-vorbis": lambda x, r: with_soundfile(x, r, "OGG", "VORBIS"),
    "ogg-opus": lambda x, r: with_pyav(x, r, "ogg", "libopus"),
    "webm-opus": lambda x, r: with_pyav(x, r, "webm", "libopus"),
    "webm-vorbis": lambda x, r: remux(with_soundfile(x, r, "OGG", "VORBIS"), "webm"),
    "mka-flac": lambda x, r: remux(with_soundfile(x, r, "FLAC", "PCM_24"), "matroska"),
    "mp3": lambda x, r: with_pyav(x, r, "mp3", "libmp3lame"),
}


@pytest.mark.parametrize("fmt", MAKERS)
@pytest.mark.parametrize("rate", [16_000, 44_100])
def test_each_format_decodes_to_its_duration_rate_and_pitch(fmt: str, rate: int) -> None:
    audio = decode_audio(MAKERS[fmt](tone(1.5, rate), rate))
    assert audio.sample_rate == 16_000
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert abs(audio.duration_s - 1.5) <= 0.05
    assert abs(peak_hz(audio.samples, 16_000) - FREQ) < 5
    assert 0.3 < np.abs(audio.samples).max() <= 1.0


def test_target_rate_none_keeps_the_file_rate() -> None:
    flac = decode_audio(MAKERS["flac"](tone(1, 44_100), 44_100), target_rate=None)
    assert flac.sample_rate == 44_100 and len(flac.samples) == 44_100
    # FFmpeg's Opus decoder always runs at 48 kHz.
    opus = decode_audio(MAKERS["ogg-opus"](tone(1, 16_000), 16_000), target_rate=None)
    assert opus.sample_rate == 48_000


def test_flac_behind_an_id3_tag_is_recognised() -> None:
    id3 = b"ID3\x04\x00\x00\x00\x00\x00\x0a" + bytes(10)
    audio = decode_audio(id3 + MAKERS["flac"](tone(1, 16_000), 16_000))
    assert abs(audio.duration_s - 1.0) < 0.01


def test_non_finite_float_samples_become_finite() -> None:
    x = tone(1, 16_000)
    x[100:200] = np.nan
    x[300] = np.inf
    audio = decode_audio(MAKERS["wav-float"](x, 16_000), target_rate=None)
    assert np.isfinite(audio.samples).all()
    assert audio.samples[300] == 1.0 and audio.samples[150] == 0.0


def test_mp3_without_id3_or_xing_header_is_still_recognised() -> None:
    raw = with_pyav(
        tone(1, 16_000), 16_000, "mp3", "libmp3lame", {"id3v2_version": "0", "write_xing": "0"}
    )
    assert raw[:2] != b"ID"
    audio = decode_audio(raw)
    # Without a LAME header the encoder's delay and padding cannot be trimmed (~1 frame each).
    assert 1.0 <= audio.duration_s < 1.15
    assert abs(peak_hz(audio.samples, 16_000) - FREQ) < 5


@pytest.mark.parametrize("fmt", ["wav-float", "ogg-opus"])
def test_stereo_is_downmixed_to_mono(fmt: str) -> None:
    left, right = tone(1, 16_000, 440), tone(1, 16_000, 1000)
    audio = decode_audio(MAKERS[fmt](np.stack([left, right], axis=1), 16_000))
    spectrum = np.abs(np.fft.rfft(audio.samples))
    freqs = np.fft.rfftfreq(len(audio.samples), 1 / 16_000)
    for hz in (440, 1000):
        assert spectrum[np.abs(freqs - hz) < 5].max() > 0.2 * spectrum.max()
    assert np.abs(audio.samples).max() <= 0.75  # an average of the two, not their sum


def test_stereo_downmix_is_the_channel_mean() -> None:
    x = tone(1, 16_000)
    audio = decode_audio(MAKERS["wav-float"](np.stack([x, -x * 0.5], axis=1), 16_000))
    np.testing.assert_allclose(audio.samples, x * 0.25, atol=1e-6)


@pytest.mark.parametrize(("src", "dst"), [(22_050, 16_000), (16_000, 48_000), (48_000, 8000)])
def test_resample_keeps_frequency_and_duration(src: int, dst: int) -> None:
    out = resample(PcmAudio(tone(2, src, 1000), src), dst)
    assert out.sample_rate == dst
    assert len(out.samples) == 2 * dst
    assert abs(peak_hz(out.samples, dst) - 1000) < 2


def test_stream_resampler_chunks_match_one_shot() -> None:
    x = tone(2, 22_050, 1000)
    stream = StreamResampler(22_050, 16_000)
    parts = [stream.process(x[i : i + 1000]) for i in range(0, len(x), 1000)]
    parts.append(stream.process(np.zeros(0, np.float32), last=True))
    np.testing.assert_allclose(
        np.concatenate(parts), resample(PcmAudio(x, 22_050), 16_000).samples, atol=1e-5
    )
    with pytest.raises(RuntimeError):
        stream.process(x)
    stream.reset()
    assert len(stream.process(x, last=True)) == 32_000


def test_wav_and_flac_round_trip_to_16_bit_precision() -> None:
    audio = PcmAudio(tone(1, 22_050), 22_050)
    for encoded in (encode_wav(audio), encode_flac(audio)):
        assert sf.info(io.BytesIO(encoded)).subtype == "PCM_16"
        back = decode_audio(encoded, target_rate=None)
        assert back.sample_rate == 22_050
        np.testing.assert_allclose(back.samples, audio.samples, atol=1 / 16_000)


@pytest.mark.parametrize("rate", [16_000, 22_050, 44_100])
def test_opus_round_trip(rate: int) -> None:
    encoded = encode_opus(PcmAudio(tone(1, rate), rate), bitrate=24_000)
    assert encoded.startswith(b"OggS") and b"OpusHead" in encoded[:64]
    back = decode_audio(encoded)
    assert abs(back.duration_s - 1) <= 0.05
    assert abs(peak_hz(back.samples, 16_000) - FREQ) < 5


def test_encoding_empty_audio() -> None:
    empty = PcmAudio(np.zeros(0, np.float32), 16_000)
    assert sf.info(io.BytesIO(encode_wav(empty))).frames == 0
    for encode in (encode_flac, encode_opus):
        with pytest.raises(ValueError, match="empty audio"):
            encode(empty)


# --- hostile and broken input ------------------------------------------------------------------


def assert_readable(err: AudioError) -> None:
    text = str(err)
    assert err.hint and "Traceback" not in text and "BytesIO" not in text and "0x" not in text


def test_empty_bytes() -> None:
    with pytest.raises(EmptyAudio) as info:
        decode_audio(b"")
    assert_readable(info.value)


NOT_AUDIO = {
    "random": np.random.default_rng(7).bytes(4096),
    "text": b"hello, this is not audio\n" * 20,
    "m3u": b"#EXTM3U\n#EXTINF:123,Song\nhttp://example.com/a.mp3\n",
    "hls": b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\nseg0.ts\n",
    "pls": b"[playlist]\nFile1=http://example.com/stream\nNumberOfEntries=1\n",
    "html": b"<!DOCTYPE html><html><body>hi</body></html>",
    "png": b"\x89PNG\r\n\x1a\n" + bytes(200),
    "zip": b"PK\x03\x04" + bytes(200),
    "ogg-speex": b"OggS\x00\x02" + bytes(20) + b"\x01\x50Speex   " + bytes(72),
}


@pytest.mark.parametrize("name", NOT_AUDIO)
def test_non_audio_is_rejected_naming_the_supported_formats(name: str) -> None:
    with pytest.raises(UnsupportedAudioFormat) as info:
        decode_audio(NOT_AUDIO[name])
    assert "WAV" in str(info.value) and "MP3" in str(info.value)
    assert info.value.http_status == 415
    assert_readable(info.value)


def test_the_rejection_says_what_the_data_looks_like() -> None:
    with pytest.raises(UnsupportedAudioFormat, match="PNG image"):
        decode_audio(NOT_AUDIO["png"])
    with pytest.raises(UnsupportedAudioFormat, match="playlist"):
        decode_audio(NOT_AUDIO["m3u"])


TRUNCATIONS = [
    (fmt, keep)
    for fmt in ("wav", "flac", "mp3", "ogg-vorbis", "ogg-opus", "webm-opus")
    for keep in (0.5, -7)
    # A WebM cut inside its last block is indistinguishable from a shorter recording.
    if (fmt, keep) != ("webm-opus", -7)
]


@pytest.mark.parametrize(("fmt", "keep"), TRUNCATIONS)
def test_truncated_files_are_corrupt(fmt: str, keep: float) -> None:
    data = MAKERS[fmt](tone(2, 16_000), 16_000)
    cut = int(len(data) * keep) if keep > 0 else len(data) + int(keep)
    with pytest.raises(AudioError, match="corrupt or truncated") as info:
        decode_audio(data[:cut])
    assert type(info.value) is AudioError
    assert_readable(info.value)


def test_oversize_bytes_are_refused_before_sniffing_or_decoding() -> None:
    limits = AudioLimits(max_bytes=10_000)
    with pytest.raises(AudioTooLarge, match="bytes") as info:
        decode_audio(b"RIFF" + bytes(10_000), limits=limits)  # not audio at all: size comes first
    assert info.value.http_status == 413
    assert_readable(info.value)
    assert decode_audio(MAKERS["flac"](tone(0.5, 8000), 8000), limits=limits).duration_s > 0.45


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg-opus", "mp3"])
def test_over_long_audio_is_too_large(fmt: str) -> None:
    limits = AudioLimits(max_duration_s=2.0)
    with pytest.raises(AudioTooLarge, match="longer than the 2 s limit") as info:
        decode_audio(MAKERS[fmt](tone(3, 16_000), 16_000), limits=limits)
    assert_readable(info.value)


def test_audio_at_exactly_the_duration_limit_passes() -> None:
    audio = decode_audio(
        MAKERS["wav"](tone(2, 16_000), 16_000), limits=AudioLimits(max_duration_s=2)
    )
    assert len(audio.samples) == 32_000


def forged_wav(
    *, rate: int | None = None, channels: int | None = None, size: int | None = None
) -> bytes:
    data = bytearray(MAKERS["wav"](tone(1, 16_000), 16_000))
    assert data[36:40] == b"data"  # the canonical 44-byte header soundfile writes
    if channels is not None:
        struct.pack_into("<H", data, 22, channels)
    if rate is not None:
        struct.pack_into("<I", data, 24, rate)
    if size is not None:
        struct.pack_into("<I", data, 40, size)
    return bytes(data)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rate": 4_000_000_000}, AudioTooLarge, "sample rate 4,000,000,000 Hz"),
        ({"rate": 2_000_000_000}, AudioTooLarge, "over the 192,000 Hz limit"),
        ({"channels": 65_535}, AudioTooLarge, "65535 channels"),
        ({"channels": 9}, AudioTooLarge, "9 channels"),
        ({"channels": 0}, AudioError, "corrupt"),
        ({"rate": 100}, AudioError, "below the 8,000 Hz minimum"),
        ({"size": 50_000_000}, AudioError, "corrupt or truncated"),
    ],
)
def test_forged_wav_headers(kwargs: dict[str, int], error: type[AudioError], match: str) -> None:
    with pytest.raises(error, match=match) as info:
        decode_audio(forged_wav(**kwargs))
    assert type(info.value) is error
    assert_readable(info.value)


def test_streaming_wav_size_placeholder_decodes_what_is_there() -> None:
    assert abs(decode_audio(forged_wav(size=0xFFFFFFFF)).duration_s - 1.0) < 0.01


def test_high_sample_rate_over_the_cap() -> None:
    data = MAKERS["flac"](tone(0.2, 96_000), 96_000)
    with pytest.raises(AudioTooLarge, match="96,000 Hz"):
        decode_audio(data, limits=AudioLimits(max_sample_rate=48_000))
    assert decode_audio(data).sample_rate == 16_000


def opus_bomb(hours: float) -> bytes:
    """Ogg Opus of ``hours`` of silence: one real libopus 120 ms packet, muxed over and over."""
    out = io.BytesIO()
    with av.open(out, "w", format="ogg") as media:
        stream = media.add_stream("libopus", rate=48_000, layout="mono")
        stream.bit_rate = 6000
        stream.codec_context.options = {"frame_duration": "120"}
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 96_000), np.float32), format="flt", layout="mono"
        )
        frame.sample_rate, frame.pts = 48_000, 0
        packets = [*stream.encode(frame), *stream.encode(None)]
        template, duration = bytes(packets[-2]), packets[-2].duration
        assert duration == 5760
        for i in range(int(hours * 3600 * 48_000 / duration)):
            packet = av.Packet(template)
            packet.pts = packet.dts = i * duration
            packet.duration, packet.stream = duration, stream
            packet.time_base = Fraction(1, 48_000)
            media.mux(packet)
    return out.getvalue()


def test_decompression_bomb_stops_at_the_duration_cap_with_bounded_memory() -> None:
    bomb = opus_bomb(hours=2)
    # 2 h decoded would be 1.38 GB of float32 at 48 kHz (460 MB at 16 kHz) from under 2 MB.
    assert len(bomb) < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(AudioTooLarge, match="longer than the 60 s limit"):
            decode_audio(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16_000_000  # 60 s at 16 kHz is 3.84 MB; all 2 h would be 460 MB


def test_zero_sample_wav_is_empty() -> None:
    with pytest.raises(EmptyAudio, match="no samples") as info:
        decode_audio(MAKERS["wav"](np.zeros(0, np.float32), 16_000))
    assert info.value.http_status == 422
    assert_readable(info.value)


def test_webm_without_audio_is_unsupported() -> None:
    out = io.BytesIO()
    with av.open(out, "w", format="webm") as media:
        stream = media.add_stream("libvpx", rate=10)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        for item in (frame, None):
            for packet in stream.encode(item):
                media.mux(packet)
    with pytest.raises(UnsupportedAudioFormat, match="no audio"):
        decode_audio(out.getvalue())


# --- silent edges -------------------------------------------------------------------------------


def test_trim_edges_keeps_the_sound_and_the_pauses_asked_for() -> None:
    rate = 24_000
    t = np.arange(int(0.5 * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    hiss = np.full(int(0.4 * rate), 1e-4, dtype=np.float32)  # -80 dBFS: silence
    audio = PcmAudio(np.concatenate([hiss, tone, hiss, hiss]), rate)
    cut = trim_edges(audio, before_s=0.05, after_s=0.2)
    assert cut.duration_s == pytest.approx(0.05 + 0.5 + 0.2, abs=0.001)
    start = int(0.05 * rate)
    np.testing.assert_array_equal(cut.samples[start : start + len(tone)], tone)


def test_trim_edges_leaves_silence_and_short_edges_alone() -> None:
    quiet = PcmAudio(np.zeros(4_800, dtype=np.float32), 24_000)
    assert trim_edges(quiet, before_s=0.05, after_s=0.2) is quiet
    assert sound_span(quiet.samples, 24_000) is None
    loud = PcmAudio(np.full(4_800, 0.5, dtype=np.float32), 24_000)
    assert trim_edges(loud, before_s=0.05, after_s=0.2) is loud


def test_leading_digital_silence_goes_and_a_soft_onset_stays() -> None:
    rate = 22_050
    onset = np.linspace(0.0, 0.3, int(0.03 * rate), dtype=np.float32)  # rises from nothing
    tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(rate // 4) / rate)).astype(np.float32)
    voice = np.concatenate([onset, tone])
    audio = PcmAudio(np.concatenate([np.zeros(int(0.045 * rate), np.float32), voice]), rate)
    cut = without_leading_silence(audio)
    assert cut.duration_s == pytest.approx(voice.size / rate, abs=0.021)  # to a 20 ms frame
    np.testing.assert_array_equal(cut.samples[-voice.size :], voice)  # the onset is all there
    starts_loud = PcmAudio(voice, rate)
    assert without_leading_silence(starts_loud) is starts_loud
    quiet = PcmAudio(np.zeros(2_000, np.float32), rate)
    assert without_leading_silence(quiet) is quiet
