"""Chinese script conversion (Traditional ⇄ Simplified) through OpenCC.

Whisper writes Mandarin in either script, sometimes both in one sentence, and the LLM answers in
whichever it likes; the user reads one. :func:`to_script` converts text into the script of a
language tag (``zh-TW`` → Traditional with Taiwan phrasing, ``zh-CN`` or plain ``zh`` →
Simplified), :class:`ScriptStream` does the same for streamed text without splitting a phrase
across two chunks, and :func:`script_variants` gives the spellings a search term may be stored in.
"""

from __future__ import annotations

import functools
import re

import opencc

# OpenCC configurations by target: the key is the normalised language tag.
_TARGETS = {
    "zh": "t2s",
    "zh-cn": "tw2sp",  # Simplified, with mainland phrasing for Taiwan words
    "zh-sg": "t2s",
    "zh-hans": "t2s",
    "zh-my": "t2s",
    "zh-tw": "s2twp",
    "zh-hant": "s2t",
    "zh-hk": "s2hk",
    "zh-mo": "s2hk",
}
# Every spelling a term may have been stored in (script and Taiwan/mainland phrasing).
_VARIANT_CONFIGS = ("t2s", "s2t", "s2tw", "s2twp", "tw2s", "tw2sp", "s2hk")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_HOLD = 8  # a run of Han characters longer than this is converted all but its last _HOLD


@functools.cache
def _converter(config: str) -> opencc.OpenCC:
    return opencc.OpenCC(config)


def script_config(language: str | None) -> str | None:
    """The OpenCC conversion for a language tag, or None when it is not Chinese."""
    if not language:
        return None
    return _TARGETS.get(language.strip().replace("_", "-").lower())


def has_han(text: str) -> bool:
    return _HAN.search(text) is not None


def to_script(text: str, language: str | None) -> str:
    """``text`` in the script of ``language`` (unchanged for non-Chinese tags)."""
    config = script_config(language)
    if config is None or not has_han(text):
        return text
    return str(_converter(config).convert(text))


def script_variants(term: str) -> list[str]:
    """``term`` and its other spellings (Traditional, Simplified, Taiwan phrasing), distinct."""
    if not has_han(term):
        return [term]
    variants = dict.fromkeys([term, *(_converter(c).convert(term) for c in _VARIANT_CONFIGS)])
    return list(variants)


class ScriptStream:
    """Converts streamed text (LLM deltas) into one script, chunk-safe.

    OpenCC converts phrases ("头发" → "頭髮", "软件" → "軟體"), so a phrase cut between two deltas
    could come out differently from the whole text. Text is released up to the last character
    that is not Han (punctuation, space, Latin): no phrase spans one. A run of Han characters
    without any is released all but its last few characters. ``flush`` releases the rest.
    """

    def __init__(self, language: str | None) -> None:
        self.config = script_config(language)
        self._pending = ""

    @property
    def active(self) -> bool:
        return self.config is not None

    def push(self, delta: str) -> str:
        """The converted text that is safe to release after ``delta``."""
        if self.config is None:
            return delta
        self._pending += delta
        cut = _safe_cut(self._pending)
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return self._convert(ready)

    def flush(self) -> str:
        """Everything still held back, converted."""
        ready, self._pending = self._pending, ""
        return self._convert(ready) if self.config is not None else ready

    def _convert(self, text: str) -> str:
        assert self.config is not None
        return str(_converter(self.config).convert(text)) if has_han(text) else text


def _safe_cut(text: str) -> int:
    """Where ``text`` may be cut without splitting a phrase OpenCC could convert as a whole."""
    for index in range(len(text) - 1, -1, -1):
        if not _HAN.match(text[index]):
            tail = len(text) - index - 1
            return index + 1 if tail <= _HOLD else len(text) - _HOLD
    return max(0, len(text) - _HOLD)
