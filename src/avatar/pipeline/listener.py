"""Listening: the microphone stream as VAD frames, endpoint events and cut utterances.

Holds the three pieces that follow the user's audio (VAD, :class:`Endpointer`,
:class:`UtteranceBuffer`) so the session sees only frames and the events they caused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from avatar.audio.edges import frame_dbfs
from avatar.audio.pcm import PcmAudio
from avatar.engines.base import VoiceActivityDetector
from avatar.pipeline.endpointing import Endpointer, EndpointerConfig, EndpointEvent, SpeechEnd
from avatar.pipeline.utterance import FRAME, FRAME_MS, UtteranceBuffer


class Listener:
    """Feeds each frame to the VAD and the endpointer and keeps it in the utterance buffer."""

    def __init__(
        self, config: EndpointerConfig, new_vad: Callable[[], VoiceActivityDetector]
    ) -> None:
        self._new_vad = new_vad
        self.vad = new_vad()
        self.endpointer = Endpointer(config)
        self.buffer = UtteranceBuffer(
            pre_roll_ms=config.pre_roll_ms, max_utterance_ms=config.max_utterance_ms
        )

    def push(self, samples: np.ndarray) -> Iterator[tuple[np.ndarray, list[EndpointEvent]]]:
        """Each whole frame of ``samples`` with the endpoint events it caused (often none)."""
        for frame in self.buffer.frames(samples):
            self.buffer.add(frame)
            level = float(frame_dbfs(frame, FRAME)[0])
            yield frame, self.endpointer.process(self.vad.probability(frame), FRAME_MS, level)

    @property
    def speech_ms(self) -> float:
        """Voiced time of the confirmed utterance in progress; 0 when nobody speaks."""
        return self.endpointer.speech_ms if self.endpointer.in_speech else 0.0

    def trim_idle(self, *, hands_free: bool) -> None:
        if not self.endpointer.in_speech:
            self.buffer.trim_idle(hands_free=hands_free)

    def force_end(self) -> list[EndpointEvent]:
        """End the utterance in progress now (push-to-talk release)."""
        return self.endpointer.force_end()

    def cut_utterance(self, end: SpeechEnd) -> PcmAudio:
        """The utterance that ``end`` closed, from its pre-roll to its tail; clears the buffer."""
        onset = end.end_ms - end.speech_ms
        return self.buffer.cut(onset - self.endpointer.config.pre_roll_ms, end.end_ms)

    def utterance_so_far(self) -> PcmAudio:
        """The utterance in progress (pre-roll to now) without cutting it: what a pause has."""
        ep = self.endpointer
        return self.buffer.so_far(ep.onset_ms - ep.config.pre_roll_ms)

    def has_speech(self, audio: PcmAudio) -> bool:
        """Whether ``audio`` holds at least ``min_speech_ms`` of voiced frames (a fresh VAD)."""
        vad = self._new_vad()
        frames = len(audio.samples) // FRAME
        voiced = sum(
            vad.probability(audio.samples[i * FRAME : (i + 1) * FRAME]) >= 0.5
            for i in range(frames)
        )
        return voiced * FRAME_MS >= self.endpointer.config.min_speech_ms
