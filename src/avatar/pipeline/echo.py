"""Recognise AVATAR's own voice in a transcript (speaker echo) so it is not taken as barge-in."""

from __future__ import annotations

import difflib
import unicodedata

from avatar.pipeline.chunker import is_cjk

_WORD_MATCH = 0.75  # difflib ratio for two words to count as the same word heard with errors


class EchoGuard:
    """Compares transcripts with the recent text of the reply being played.

    Call :meth:`playing` with each piece of reply text as its audio starts, and :meth:`stopped`
    when playback ends or is cut. The recent text stays after :meth:`stopped`, because a
    transcript of audio heard during playback may arrive later; the next reply's first
    :meth:`playing` (or :meth:`clear`) replaces it.

    A transcript is echo when it has at least ``min_tokens`` tokens and at least ``threshold``
    of them occur in the recent text: words, matched with tolerance for recognition errors, and
    for Chinese and Japanese, character pairs. Shorter transcripts are never echo, so a short
    answer that repeats a word of the question ("coffee or tea?" - "tea") is kept.

    The guard knows no time: the caller should ask only about speech that overlapped playback
    (or its first second after), since a user may well repeat the assistant's words later.
    """

    def __init__(
        self, *, threshold: float = 0.6, min_tokens: int = 3, window_chars: int = 400
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        self.threshold = threshold
        self.min_tokens = min_tokens
        self.window_chars = window_chars
        self._recent = ""
        self._active = False

    @property
    def active(self) -> bool:
        """Whether reply audio is playing now."""
        return self._active

    @property
    def recent_text(self) -> str:
        return self._recent

    def playing(self, text: str) -> None:
        """Reply ``text`` starts playing (appended to the current reply's recent text)."""
        if not self._active:
            self._recent = ""
        self._active = True
        self._recent = f"{self._recent} {text}".strip()[-self.window_chars :]

    def stopped(self) -> None:
        """Playback ended or was interrupted."""
        self._active = False

    def clear(self) -> None:
        """Forget the recent text."""
        self._recent = ""
        self._active = False

    def is_echo(self, transcript: str) -> bool:
        """Whether ``transcript`` is mostly the recent reply text heard back through the mic."""
        if len(_tokens(transcript)) < self.min_tokens:
            return False
        return echo_ratio(transcript, self._recent) >= self.threshold


def echo_ratio(transcript: str, reference: str) -> float:
    """Share of the transcript's tokens found in ``reference`` (0 for an empty transcript)."""
    heard = _tokens(transcript)
    if not heard:
        return 0.0
    said = _tokens(reference)
    said_set = set(said) | {ch for token in said if _is_cjk(token) for ch in token}
    words = [token for token in said if not _is_cjk(token)]
    found = sum(1 for token in heard if _found(token, said_set, words))
    return found / len(heard)


def _found(token: str, said: set[str], words: list[str]) -> bool:
    if token in said:
        return True
    if _is_cjk(token) or len(token) < 3:
        return False
    return bool(difflib.get_close_matches(token, words, n=1, cutoff=_WORD_MATCH))


def _tokens(text: str) -> list[str]:
    """Lowercased words without punctuation; runs of CJK characters become character pairs."""
    tokens: list[str] = []
    for word in _split_scripts(unicodedata.normalize("NFKC", text).casefold()):
        if is_cjk(word[0]):
            pairs = [word[i : i + 2] for i in range(len(word) - 1)]
            tokens += pairs or [word]
        else:
            tokens.append(word)
    return tokens


def _split_scripts(text: str) -> list[str]:
    """Runs of letters/digits, split where the text switches between CJK and other scripts."""
    runs: list[str] = []
    current = ""
    for ch in text:
        if not ch.isalnum() or (current and is_cjk(ch) != is_cjk(current[-1])):
            if current:
                runs.append(current)
            current = ""
        if ch.isalnum():
            current += ch
    if current:
        runs.append(current)
    return runs


def _is_cjk(token: str) -> bool:
    return is_cjk(token[0])
