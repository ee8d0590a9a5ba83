"""Fuzz target: ``decode_audio`` on arbitrary bytes must return audio or raise an AvatarError.

Run by hand (corpus folder first; seeds are written into it when it is empty)::

    python tests/fuzz/fuzz_decode.py /tmp/corpus-decode -max_total_time=600

tests/test_fuzz.py runs it for a bounded time in the suite. Any other exception (or a crash in
a native decoder, or an input over the per-input timeout) makes libFuzzer stop with a non-zero
status and write the input to ``crash-*``/``timeout-*`` in the working folder.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["avatar"]):
    from avatar.audio.decode import AudioLimits, decode_audio
    from avatar.errors import AvatarError

LIMITS = AudioLimits(max_bytes=1 << 20, max_duration_s=5.0)


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(AvatarError):
        decode_audio(data, limits=LIMITS)


def seeds() -> dict[str, bytes]:
    """Small valid files of every supported container (0.1-0.3 s of a tone)."""
    import av
    import numpy as np
    import soundfile as sf

    from avatar.audio.encode import encode_opus, encode_wav
    from avatar.audio.pcm import PcmAudio

    rate = 16_000
    t = np.arange(int(0.1 * rate), dtype=np.float32) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)

    def with_sf(fmt: str, subtype: str, x: np.ndarray = tone, r: int = rate) -> bytes:
        out = io.BytesIO()
        sf.write(out, x, r, format=fmt, subtype=subtype)
        return out.getvalue()

    def with_av(fmt: str, codec: str, r: int) -> bytes:
        out = io.BytesIO()
        with av.open(out, "w", format=fmt) as media:
            stream = media.add_stream(codec, rate=r, layout="mono")
            assert isinstance(stream, av.AudioStream)
            n = int(0.3 * r)
            x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / r)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = r, 0
            for item in (frame, None):
                for packet in stream.encode(item):
                    media.mux(packet)
        return out.getvalue()

    return {
        "wav": encode_wav(PcmAudio(tone, rate)),
        "wav-float-stereo": with_sf("WAV", "FLOAT", np.stack([tone, tone], axis=1)),
        "flac": with_sf("FLAC", "PCM_16"),
        "ogg-vorbis": with_sf("OGG", "VORBIS"),
        "ogg-opus": encode_opus(PcmAudio(tone, rate)),
        "mp3": with_av("mp3", "libmp3lame", 22_050),
        "webm": with_av("webm", "libopus", 48_000),
    }


def main() -> None:
    corpus = next((Path(a) for a in sys.argv[1:] if not a.startswith("-")), None)
    if corpus is not None and corpus.is_dir() and not any(corpus.iterdir()):
        for name, data in seeds().items():
            (corpus / f"seed-{name}").write_bytes(data)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
