"""A voice reply's chat model and TTS take turns on the CPU.

On a small machine each engine is fastest with every core to itself: Piper on two threads
speaks a first chunk in ~60 % of the time it takes on one, and llama.cpp decodes a token in
~34 ms on two threads. Run side by side they split the cores and both slow down; in turns, the
chat model waits between tokens while TTS synthesizes a chunk, so the first audio comes as soon
as it can, and writing goes on while the audio plays (the model is ~10x faster than speech).
The pipeline marks TTS work with :meth:`CpuTurns.speaking`; an engine on this CPU calls
:meth:`CpuTurns.wait` between tokens (an engine on a GPU or a server has no reason to).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CpuTurns:
    """One reply's turn-taking between its chat model (an engine thread) and its TTS."""

    def __init__(self) -> None:
        self._free = threading.Event()  # set: TTS is not synthesizing
        self._free.set()

    @contextmanager
    def speaking(self) -> Iterator[None]:
        """While TTS synthesizes (event loop side): the chat model waits at its next token."""
        self._free.clear()
        try:
            yield
        finally:
            self._free.set()

    def wait(self, cancel: threading.Event, poll_s: float = 0.05) -> None:
        """Engine thread, between tokens: return when TTS is idle, or at once when cancelled."""
        while not self._free.wait(poll_s):
            if cancel.is_set():
                return
