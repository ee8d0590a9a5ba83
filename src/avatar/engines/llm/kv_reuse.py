"""Put as much of a prompt as possible in llama.cpp's KV cache before reading it.

A voice session's history is trimmed to its token budget from the oldest turn. Once a
conversation is that long, each new prompt is the system prompt, then the last prompt *without
its oldest turn*, then the new words: plain prefix reuse keeps only the system prompt, and every
turn reads ~2,000 tokens again (15-60 s on two cores; the 30-minute soak of issue 16 went from
21 turns a minute to 2 when its histories reached the budget). As llama.cpp's own server does
(context shift, cache reuse), the dropped turn is removed from the KV cache and what follows it
is shifted back to close the gap, so only the new words are read.

The reused keys were computed beside the dropped turn; llama.cpp's server accepts that for chat,
and so do we: a reply after a shift may differ from one read from scratch in wording, not in
kind.

Candidates are the tokens in the KV cache now and the prompt states of the
:class:`~avatar.engines.llm.llamacpp.PromptStateCache`. Call only on the engine's own thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import llama_cpp
import numpy as np

MIN_SHIFTED = 32  # a gap is closed only when it keeps at least this many tokens after it


@dataclass(frozen=True, slots=True)
class Placement:
    """``tokens[:prefix]`` are in place; then ``tokens[prefix:prefix + moved]`` are found at
    ``source[gap_end:]`` and move back by ``gap_end - prefix`` positions."""

    prefix: int
    gap_end: int = 0
    moved: int = 0

    @property
    def reused(self) -> int:
        return self.prefix + self.moved


def plan(source: np.ndarray, tokens: np.ndarray, *, gaps: bool = True) -> Placement:
    """The most of ``tokens`` that ``source`` (tokens in a KV cache) holds, with one gap closed
    (``gaps``: the model's positions can be shifted)."""
    prefix = _common_prefix(source, tokens)
    if not gaps or prefix >= min(len(source), len(tokens)):
        return Placement(prefix)
    best = Placement(prefix)
    after = tokens[prefix:]
    # where the rest of the prompt could resume in the source: positions holding its next token
    for start in np.flatnonzero(source[prefix + 1 :] == after[0]) + prefix + 1:
        moved = _common_prefix(source[start:], after)
        if moved > best.moved:
            best = Placement(prefix, int(start), moved)
    return best if best.moved >= MIN_SHIFTED else Placement(prefix)


def place(llama: llama_cpp.Llama, tokens: Sequence[int]) -> int:
    """Arrange the KV cache for ``tokens``; how many of its leading tokens are now in place.

    The caller evaluates ``tokens[returned:]`` (llama-cpp-python's own prefix match does, too).
    """
    wanted = np.asarray(tokens, dtype=np.intc)
    memory = llama_cpp.llama_get_memory(llama._ctx.ctx)  # noqa: SLF001 - no public accessor
    gaps = bool(llama_cpp.llama_memory_can_shift(memory))  # False for e.g. recurrent models
    current = np.asarray(llama.input_ids[: llama.n_tokens], dtype=np.intc)
    best, state = plan(current, wanted, gaps=gaps), None
    cache = llama.cache
    # Nothing stored can beat a KV cache that already holds it all (a reply right after the
    # end-of-turn pass over the same words).
    if cache is not None and best.reused < len(wanted):
        for stored in list(cache.cache_state.values()):
            source = np.asarray(stored.input_ids[: stored.n_tokens], np.intc)
            candidate = plan(source, wanted, gaps=gaps)
            if candidate.reused > best.reused:
                best, state = candidate, stored
    if state is not None:
        llama.load_state(state)
    if best.moved:
        end = best.gap_end + best.moved
        removed = llama_cpp.llama_memory_seq_rm(memory, -1, end, -1)  # after the reused part
        removed &= llama_cpp.llama_memory_seq_rm(memory, -1, best.prefix, best.gap_end)  # the gap
        llama_cpp.llama_memory_seq_add(memory, 0, best.gap_end, end, best.prefix - best.gap_end)
    else:
        removed = llama_cpp.llama_memory_seq_rm(memory, -1, best.prefix, -1)
    if not removed:  # the cache could not drop a part of the sequence: read it all again
        llama_cpp.llama_memory_clear(memory, True)
        best = Placement(0)
    reused = best.reused
    llama.input_ids[:reused] = wanted[:reused]
    llama.n_tokens = reused
    return reused


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n
