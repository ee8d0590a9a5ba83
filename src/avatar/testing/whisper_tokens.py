"""How many tokens each Whisper decode generates (tests and benchmarks of trimmed decoding)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def counting_tokens(model: Any) -> Iterator[list[int]]:
    """While inside, every ``model.generate_with_fallback`` (a faster-whisper ``WhisperModel``)
    appends the number of tokens it generated to the yielded list."""
    real = model.generate_with_fallback
    patched_before = "generate_with_fallback" in vars(model)
    counts: list[int] = []

    def counting(*args: Any) -> Any:
        out = real(*args)
        counts.append(len(out[0].sequences_ids[0]))
        return out

    model.generate_with_fallback = counting
    try:
        yield counts
    finally:
        if patched_before:
            model.generate_with_fallback = real
        else:
            del model.generate_with_fallback  # the class's method again
