"""Mandarin text to Kokoro phonemes: misaki's zh G2P for Chinese, espeak-ng for English words.

Kokoro-82M v1.0 was trained on misaki's first ("legacy") zh G2P: jieba words, pypinyin, IPA with
tone arrows. That G2P passes Latin letters through unchanged, which Kokoro then reads as
individual IPA letters; so runs of Latin script (English words in a Chinese reply) are taken out
and phonemised by espeak-ng's en-us voice, whose IPA is mapped onto Kokoro's symbols (the same
few merges misaki makes: diphthongs to one letter, affricates to ligatures, no length marks).
Traditional and Simplified characters both work (pypinyin reads either).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from avatar.engines.tts.zh_normalize import normalize_zh

# espeak-ng IPA -> Kokoro/misaki symbols, longest first.
_EN_TO_KOKORO = (
    ("aɪ", "I"),
    ("aʊ", "W"),
    ("eɪ", "A"),
    ("oʊ", "O"),
    ("ɔɪ", "Y"),
    ("dʒ", "ʤ"),
    ("tʃ", "ʧ"),
    ("ɚ", "əɹ"),
    ("ɐ", "ə"),
    ("r", "ɹ"),
    ("x", "k"),
    ("ɾ", "T"),
    ("ʔ", "t"),
    ("ː", ""),
)
_LATIN_RUN = re.compile(r"[A-Za-z][A-Za-z'’\-]*(?:[ ]+[A-Za-z][A-Za-z'’\-]*)*")

EnglishPhonemizer = Callable[[str], str]


def espeak_english() -> EnglishPhonemizer:
    """English words to Kokoro symbols through the process's espeak-ng library."""
    from avatar.engines.tts.espeak import _EspeakLibrary

    library = _EspeakLibrary.get()

    def phonemize(words: str) -> str:
        ipa = library.phonemes("en-us", words)
        for old, new in _EN_TO_KOKORO:
            ipa = ipa.replace(old, new)
        return ipa

    return phonemize


@lru_cache(maxsize=1)
def _zh_g2p() -> Any:
    import jieba
    from misaki.zh import ZHG2P

    jieba.setLogLevel(60)  # jieba logs its dictionary build at INFO on first use
    return ZHG2P()  # version None: the G2P Kokoro v1.0 was trained with


class MandarinPhonemes:
    """Callable: Chinese text (either script, English words allowed) -> Kokoro phoneme string."""

    def __init__(self, english: EnglishPhonemizer | None = None) -> None:
        self.english = english

    def warm_up(self) -> None:
        """Build jieba's dictionary now (~1 s) rather than on the first reply."""
        self("你好")

    def __call__(self, text: str) -> str:
        spoken = normalize_zh(text)
        pieces: list[str] = []
        cursor = 0
        for match in _LATIN_RUN.finditer(spoken):
            pieces.append(self._chinese(spoken[cursor : match.start()]))
            pieces.append(self._latin(match.group()))
            cursor = match.end()
        pieces.append(self._chinese(spoken[cursor:]))
        return " ".join(p for p in pieces if p)

    def _chinese(self, text: str) -> str:
        if not text.strip():
            return ""
        phonemes, _ = _zh_g2p()(text)
        return str(phonemes).strip()

    def _latin(self, words: str) -> str:
        if self.english is None:
            return words.lower()  # misaki's own behaviour: letters read as IPA symbols
        return self.english(words)
