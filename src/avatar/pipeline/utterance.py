"""The user's audio between turns: framing for the VAD, pre-roll, trimming and cutting.

Pure and clock-free like the endpointer: stream time is the length of the audio pushed, in
milliseconds, and matches the endpointer's clock when both are fed the same frames.
"""

from __future__ import annotations

import numpy as np

from avatar.audio.pcm import PcmAudio

SAMPLE_RATE_IN = 16_000
FRAME = 512  # samples per VAD frame at 16 kHz (32 ms)
FRAME_MS = FRAME * 1000 / SAMPLE_RATE_IN
TAIL_MS = 150.0  # audio kept after the last voiced frame (soft word endings)


class UtteranceBuffer:
    """Frames incoming samples and keeps the stream since the last utterance was cut.

    While nobody speaks only the pre-roll is kept (hands-free), or up to the longest utterance
    (push-to-talk, where the whole buffer is the utterance), so memory stays bounded.
    """

    def __init__(self, *, pre_roll_ms: float, max_utterance_ms: float) -> None:
        self.pre_roll_ms, self.max_utterance_ms = pre_roll_ms, max_utterance_ms
        self._pending = np.zeros(0, dtype=np.float32)  # samples not yet framed
        self._frames: list[np.ndarray] = []  # the stream since the last cut, framed
        self._start_ms = 0.0  # stream time of self._frames[0]

    def frames(self, samples: np.ndarray) -> list[np.ndarray]:
        """Split ``samples`` (after any left over) into whole frames; the rest waits for more.

        Frames are not kept until :meth:`add` (the caller adds each one as it processes it, so a
        cut between frames leaves the later ones for the next utterance).
        """
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        whole = len(self._pending) // FRAME
        frames = [self._pending[i * FRAME : (i + 1) * FRAME] for i in range(whole)]
        self._pending = self._pending[whole * FRAME :]
        return frames

    def add(self, frame: np.ndarray) -> None:
        """Keep one frame (stream time advances by one frame)."""
        self._frames.append(frame)

    @property
    def end_ms(self) -> float:
        """Stream time of the end of the framed audio."""
        return self._start_ms + len(self._frames) * FRAME_MS

    def backlog(self) -> np.ndarray:
        """All framed audio kept (the pre-roll and the frames since)."""
        return np.concatenate(self._frames) if self._frames else np.zeros(0, np.float32)

    def trim_idle(self, *, hands_free: bool) -> None:
        """Drop audio no utterance can need while nobody speaks."""
        keep_ms = self.pre_roll_ms + 2 * FRAME_MS if hands_free else self.max_utterance_ms
        keep = int(keep_ms / FRAME_MS)
        if len(self._frames) > keep:
            self._start_ms += (len(self._frames) - keep) * FRAME_MS
            del self._frames[:-keep]

    def so_far(self, start_ms: float | None = None) -> PcmAudio:
        """The audio from ``start_ms`` (stream time) to now, without clearing the buffer."""
        samples = self.backlog()
        lo = self._index(start_ms) if start_ms is not None else 0
        return PcmAudio(samples[lo:], SAMPLE_RATE_IN)

    def cut(self, start_ms: float | None = None, end_ms: float | None = None) -> PcmAudio:
        """The utterance from ``start_ms`` to ``end_ms`` plus a short tail; clears the buffer."""
        samples = self.backlog()
        lo = self._index(start_ms) if start_ms is not None else 0
        hi = self._index(end_ms + TAIL_MS) if end_ms is not None else len(samples)
        self._start_ms += len(samples) * 1000 / SAMPLE_RATE_IN
        self._frames = []
        return PcmAudio(samples[lo:hi].astype(np.float32), SAMPLE_RATE_IN)

    def _index(self, ms: float) -> int:
        return max(0, int((ms - self._start_ms) * SAMPLE_RATE_IN / 1000))
