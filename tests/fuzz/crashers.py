"""Inputs the fuzzers found, rebuilt from valid files so they can be kept as regression cases."""

from __future__ import annotations

import io
from collections.abc import Callable

import av
import numpy as np


def tiny_webm(title: str | None = None) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="webm") as media:
        if title:
            media.metadata["title"] = title
        stream = media.add_stream("libopus", rate=48_000, layout="mono")
        assert isinstance(stream, av.AudioStream)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 4800), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate, frame.pts = 48_000, 0
        for item in (frame, None):
            for packet in stream.encode(item):
                media.mux(packet)
    return out.getvalue()


def webm_with_invalid_utf8_tag() -> bytes:
    """A title tag that is not UTF-8: PyAV's strict metadata decoding raised UnicodeDecodeError."""
    data = tiny_webm("TAGTAGTAG")
    assert data.count(b"TAGTAGTAG") == 1
    return data.replace(b"TAGTAGTAG", b"\x89\xfe\xffTAGTAG")


def webm_with_unknown_codec() -> bytes:
    """An audio track whose codec FFmpeg does not know: ``codec_context`` is None."""
    data = tiny_webm()
    assert data.count(b"A_OPUS") == 1
    return data.replace(b"A_OPUS", b"A_XQZW")


CRASHERS: dict[str, Callable[[], bytes]] = {
    "invalid-utf8-tag": webm_with_invalid_utf8_tag,
    "unknown-codec": webm_with_unknown_codec,
}
