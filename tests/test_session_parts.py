"""The pure pieces of a voice session: utterance buffer, generation, playback clock."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avatar.pipeline.events import Pong, SessionEvent
from avatar.pipeline.generation import Generation
from avatar.pipeline.playback import PlaybackClock
from avatar.pipeline.utterance import FRAME, FRAME_MS, TAIL_MS, UtteranceBuffer
from avatar.testing.clock import FakeClock


def numbered_frames(buffer: UtteranceBuffer, count: int, first: int = 0) -> None:
    """Push ``count`` frames whose samples are their frame number (so cuts are readable)."""
    samples = np.repeat(np.arange(first, first + count, dtype=np.float32), FRAME)
    for frame in buffer.frames(samples):
        buffer.add(frame)


def frame_numbers(samples: np.ndarray) -> list[int]:
    return sorted({int(v) for v in samples})


def test_frames_wait_for_whole_frames() -> None:
    buffer = UtteranceBuffer(pre_roll_ms=100, max_utterance_ms=1000)
    assert buffer.frames(np.zeros(FRAME - 1, np.float32)) == []
    (frame,) = buffer.frames(np.zeros(2, np.float32))
    assert len(frame) == FRAME and buffer.end_ms == 0.0  # not kept until added


def test_cut_takes_the_span_plus_tail_and_clears() -> None:
    buffer = UtteranceBuffer(pre_roll_ms=0, max_utterance_ms=10_000)
    numbered_frames(buffer, 10)
    audio = buffer.cut(2 * FRAME_MS, 5 * FRAME_MS)
    # frames 2-4, then the 150 ms tail: 4.7 frames more
    assert TAIL_MS == 150.0 and frame_numbers(audio.samples) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert len(buffer.backlog()) == 0 and buffer.end_ms == 10 * FRAME_MS
    numbered_frames(buffer, 2, first=10)  # stream time goes on across cuts
    assert frame_numbers(buffer.cut(11 * FRAME_MS).samples) == [11]


def test_so_far_does_not_clear() -> None:
    buffer = UtteranceBuffer(pre_roll_ms=0, max_utterance_ms=10_000)
    numbered_frames(buffer, 6)
    assert frame_numbers(buffer.so_far(3 * FRAME_MS).samples) == [3, 4, 5]
    assert frame_numbers(buffer.so_far().samples) == [0, 1, 2, 3, 4, 5]
    assert frame_numbers(buffer.cut().samples) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(("hands_free", "kept"), [(True, 3 + 2), (False, 20)])
def test_idle_trimming_keeps_the_pre_roll_or_the_longest_utterance(hands_free, kept) -> None:
    buffer = UtteranceBuffer(pre_roll_ms=3 * FRAME_MS, max_utterance_ms=20 * FRAME_MS)
    numbered_frames(buffer, 100)
    buffer.trim_idle(hands_free=hands_free)
    assert frame_numbers(buffer.backlog()) == list(range(100 - kept, 100))
    assert frame_numbers(buffer.cut(98 * FRAME_MS, 98 * FRAME_MS).samples)[0] == 98


async def test_a_new_generation_makes_the_old_one_stale_and_cancel_stops_its_task() -> None:
    said: list[SessionEvent] = []

    async def emit(event: SessionEvent) -> None:
        said.append(event)

    gens: list[int] = []
    stopped = asyncio.Event()

    async def reply(generation: int) -> None:
        gens.append(generation)
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    first = Generation()
    one = first.begin(reply)
    old = first.guard(one, emit)
    await asyncio.sleep(0)
    assert first.running and first.is_current(one)
    assert await first.cancel() and stopped.is_set() and not first.running
    assert not first.is_current(one)
    await old(Pong())
    two = first.begin(reply)
    await first.guard(two, emit)(Pong())
    await asyncio.sleep(0)
    assert said == [Pong()] and two > one and gens == [one, two]
    assert await first.cancel() and not await first.cancel()  # nothing left to cancel


def test_playback_clock_follows_the_audio_sent() -> None:
    clock = FakeClock()
    playback = PlaybackClock(clock)
    assert not playback.playing(grace_s=1.0)  # nothing sent yet
    playback.sent(2.0)
    playback.sent(1.0)  # queued after the first
    clock._now += 2.9
    assert playback.playing()
    clock._now += 0.2
    assert not playback.playing() and playback.playing(grace_s=1.0)
    playback.stop()
    assert not playback.playing(grace_s=1.0)
