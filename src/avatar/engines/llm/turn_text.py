"""A chat model's own guess that the user has finished: P(the sentence ends | the user's words).

The LiveKit turn-detector idea, with the chat model we already run: render the conversation with
the model's chat template, stop right after the user's last word, and read the probability the
model gives to what ends a sentence there: ".", "?", "!" (and their CJK forms, alone or before a
newline or a quote) or the token its template puts after a user message (``<|im_end|>`` for
ChatML). "What is the capital" makes those unlikely; "What is the capital of Japan" likely.

As LiveKit does, the words are read without their final punctuation: Whisper punctuates half
sentences too ("What is the capital?"), and after any "?" the untuned model gives its end-of-turn
token ~0.93-0.99, complete question or not, so the old signal was mostly Whisper's punctuation
(docs/BENCHMARKS.md, "End of turn"). The model's own P(punctuation next) after the bare words
separates first halves from whole questions better on the hesitation set.

One forward pass over the tokens not already in llama.cpp's KV cache (or in the prompt-state
cache, or there with older turns dropped: :mod:`avatar.engines.llm.kv_reuse`), so a call costs
roughly the user's new words. Call only on the engine's own thread.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from avatar.engines.llm.kv_reuse import place

# A token that ends a sentence: its punctuation, then only spaces, newlines or closing quotes.
# An ellipsis ("What is the...") is a sentence trailing off, not ending.
_SENTENCE_END = re.compile(r"^\s*(?!\.\.)[.?!。？！]+[\s\"'”’)\]」』]*$")
_FINAL_PUNCTUATION = re.compile(r"[\s.?!。？！…,，、;；:：]+$")
_MARK = "\ue000"  # a private-use character no message contains: where the user's words go


@dataclass(frozen=True, slots=True)
class TurnPrompt:
    """The prompt up to the user's last word (without final punctuation), and the tokens that
    would end the sentence or the user's turn there."""

    tokens: list[int]
    end_tokens: np.ndarray


class TurnPrompter:
    """Builds :class:`TurnPrompt` s with one model's chat template."""

    def __init__(self, llama: llama_cpp.Llama) -> None:
        self._llama = llama
        self._sentence_ends: np.ndarray | None = None
        template = llama.metadata.get("tokenizer.chat_template")
        self._formatter = None
        if template:
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=_token_text(llama, llama.token_eos()),
                bos_token=_token_text(llama, llama.token_bos()),
                add_generation_prompt=False,
            )

    def prompt(self, messages: Sequence[dict[str, str]]) -> TurnPrompt | None:
        """None when the model has no template or the last message is not the user's words."""
        if self._formatter is None or not messages or messages[-1]["role"] != "user":
            return None
        words = messages[-1]["content"].rstrip()
        bare = _FINAL_PUNCTUATION.sub("", words)
        if not bare:
            return None
        history: list[Any] = [*messages[:-1], {"role": "user", "content": words}]
        rendered = self._formatter(messages=history)
        start = rendered.prompt.rfind(words)
        if start < 0:
            return None
        cut = start + len(bare)
        tail = self._tokenize(rendered.prompt[start + len(words) :])
        if not tail:
            return None
        ends = np.union1d(self.sentence_ends(), [tail[0]])
        return TurnPrompt(self._tokenize(rendered.prompt[:cut]), ends)

    def next_user(self, messages: Sequence[dict[str, str]]) -> list[int] | None:
        """The prompt after ``messages`` up to where a next user message's words begin (the
        template's end of the last message and its user header); None without a template."""
        if self._formatter is None or not messages:
            return None
        history: list[Any] = [*messages, {"role": "user", "content": _MARK}]
        rendered = self._formatter(messages=history).prompt
        start = rendered.rfind(_MARK)
        return self._tokenize(rendered[:start]) if start > 0 else None

    def sentence_ends(self) -> np.ndarray:
        """The vocabulary's sentence-ending tokens (one pass over it, ~0.4 s, then kept)."""
        if self._sentence_ends is None:
            llama = self._llama
            self._sentence_ends = np.asarray(
                [
                    token
                    for token in range(llama.n_vocab())
                    if _SENTENCE_END.match(_decoded(llama, token))
                ],
                dtype=np.intc,
            )
        return self._sentence_ends

    def _tokenize(self, text: str) -> list[int]:
        # As llama-cpp-python's chat handlers do: the template writes its own special tokens.
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def end_probability(llama: llama_cpp.Llama, prompt: TurnPrompt) -> float:
    """P(one of ``prompt.end_tokens`` next), reading only what the KV cache does not hold."""
    # at least the last token is evaluated, since its logits are what we read
    start = min(place(llama, prompt.tokens), len(prompt.tokens) - 1)
    llama.n_tokens = start
    llama.eval(prompt.tokens[start:])
    raw = llama_cpp.llama_get_logits_ith(llama._ctx.ctx, -1)  # noqa: SLF001 - no public accessor
    logits = np.ctypeslib.as_array(raw, shape=(llama.n_vocab(),)).astype(np.float64)
    logits -= logits.max()
    weights = np.exp(logits)
    return float(weights[prompt.end_tokens].sum() / weights.sum())


def read_ahead(llama: llama_cpp.Llama, tokens: Sequence[int]) -> int:
    """Read ``tokens`` into the KV cache now (what it does not hold yet); the number read."""
    start = place(llama, tokens)
    if start < len(tokens):
        llama.n_tokens = start
        llama.eval(tokens[start:])
    return len(tokens) - start


def _decoded(llama: llama_cpp.Llama, token: int) -> str:
    return llama.detokenize([token]).decode("utf-8", errors="ignore")


def _token_text(llama: llama_cpp.Llama, token: int) -> str:
    return llama._model.token_get_text(token) if token != -1 else ""  # noqa: SLF001
