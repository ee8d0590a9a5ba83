"""A chat model's own guess that the user has finished: P(end-of-turn token | the user's words).

The LiveKit turn-detector idea, with the chat model we already run: render the conversation with
the model's chat template, stop right after the user's last word, and read the probability the
model gives to the token its template puts there when a user message ends (``<|im_end|>`` for
ChatML). "What is the capital" makes that token unlikely; "What is the capital of Japan?" likely.

One forward pass over the tokens not already in llama.cpp's KV cache (or in the prompt-state
cache, or there with older turns dropped: :mod:`avatar.engines.llm.kv_reuse`), so a call costs
roughly the user's new words. Call only on the engine's own thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from avatar.engines.llm.kv_reuse import place


@dataclass(frozen=True, slots=True)
class TurnPrompt:
    """The prompt up to the user's last word, and the token that would end the user's turn."""

    tokens: list[int]
    end_token: int


class TurnPrompter:
    """Builds :class:`TurnPrompt` s with one model's chat template."""

    def __init__(self, llama: llama_cpp.Llama) -> None:
        self._llama = llama
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
        if not words:
            return None
        history: list[Any] = [*messages[:-1], {"role": "user", "content": words}]
        rendered = self._formatter(messages=history)
        cut = rendered.prompt.rfind(words) + len(words)
        if cut < len(words):
            return None
        tail = self._tokenize(rendered.prompt[cut:])
        return TurnPrompt(self._tokenize(rendered.prompt[:cut]), tail[0]) if tail else None

    def _tokenize(self, text: str) -> list[int]:
        # As llama-cpp-python's chat handlers do: the template writes its own special tokens.
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def end_probability(llama: llama_cpp.Llama, prompt: TurnPrompt) -> float:
    """P(``prompt.end_token`` next), evaluating only what the KV cache does not already hold."""
    # at least the last token is evaluated, since its logits are what we read
    start = min(place(llama, prompt.tokens), len(prompt.tokens) - 1)
    llama.n_tokens = start
    llama.eval(prompt.tokens[start:])
    raw = llama_cpp.llama_get_logits_ith(llama._ctx.ctx, -1)  # noqa: SLF001 - no public accessor
    logits = np.ctypeslib.as_array(raw, shape=(llama.n_vocab(),)).astype(np.float64)
    logits -= logits.max()
    weights = np.exp(logits)
    return float(weights[prompt.end_token] / weights.sum())


def _token_text(llama: llama_cpp.Llama, token: int) -> str:
    return llama._model.token_get_text(token) if token != -1 else ""  # noqa: SLF001
