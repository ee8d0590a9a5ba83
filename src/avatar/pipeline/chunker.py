"""Speakable chunks from streamed LLM text, and the markdown cleanup applied to them.

:class:`TextChunker` releases the first chunk early, so TTS can start: at the first clause
boundary once it holds a few words, else before a word that opens a clause or a phrase
("because", "which", "in", "across", …) or before the verb after a long subject ("The capital
of France | is Paris.") once it holds four, else after ``max_first_words`` words
(never after "a", "the", "of", …; Chinese: after ``max_first_cjk_chars`` characters, or after
是, 了 or 的 where one is near). Later chunks end at sentence ends or
newlines, or are cut at a space when they grow past ``max_chars``. Every boundary is decided
only once the character after it has arrived, so the chunks do not depend on how the text was
split into deltas.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

SENTENCE_END = ".!?…"
CJK_SENTENCE_END = "。！？"
CLAUSE = ",;:"
CJK_CLAUSE = "，、；："
DASHES = "—–"
CLOSERS = "\"'”’)]}」』》）】*`"  # markdown emphasis may close after the punctuation
OPENERS = "\"'“‘([{「『《（【"
# Words that open a clause or a phrase: a natural place to end a first chunk before them;
# and words a first chunk never ends on.
# fmt: off
PREPOSITIONS = frozenset((
    "in", "on", "at", "for", "with", "from", "by", "about", "across", "over", "under", "into",
    "through", "during", "after", "before", "around", "between", "near", "without", "within",
))
BREAK_BEFORE = PREPOSITIONS | frozenset((
    "and", "but", "because", "which", "who", "whose", "when", "while", "where", "if",
    "although", "though", "since", "unless", "until", "whereas",
))
# The verb after a subject of four words or more: where a speaker breathes ("The largest ocean
# on Earth | is the Pacific."); never after a pronoun ("what it | is") or "that".
BREAK_BEFORE_VERB = frozenset((
    "is", "are", "was", "were", "has", "have", "had", "can", "will", "would", "could", "should",
    "may", "might", "must", "do", "does", "did",
))
PRONOUNS = frozenset(("i", "you", "he", "she", "it", "we", "they", "there", "who", "what"))
NEVER_LAST = PREPOSITIONS | frozenset((
    "a", "an", "the", "of", "to", "and", "or", "but", "my", "your", "his", "her", "its", "our",
    "their", "this", "that", "these", "those", "very", "is", "are", "was", "were", "as", "so",
    "than", "like",
))
# fmt: on
CJK_BREAK_AFTER = "是了的"  # a first Chinese chunk may end after these (a phrase ends)
# Abbreviations that never end a sentence, and those that end one before a capital letter.
# fmt: off
NEVER_END = frozenset((
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "cf", "approx", "fig",
    "mt", "gen", "col", "lt", "sgt", "rev",
))
MAYBE_END = frozenset((
    "etc", "a.m", "p.m", "u.s", "u.k", "inc", "ltd", "co", "corp",
    "jan", "feb", "mar", "apr", "jun", "aug", "sep", "oct", "nov", "dec",
))
# fmt: on
_DOTTED = re.compile(r"(?:[a-z]\.)+[a-z]")
_COMPLETE_TOKEN = re.compile(r"\S+(?=\s)")

_LINE_MARKER = r"^[ \t]*(?:#{1,6}|>+|[-+*•]|\d{1,3}[.)])"  # headings, quotes, list items
_LINE_RULES = [
    re.compile(r"^[ \t]*(?:```|~~~).*$", re.M),  # code fence lines
    re.compile(r"^[ \t]*([-*_=])(?:[ \t]*\1){2,}[ \t]*$", re.M),  # horizontal rules
    re.compile(_LINE_MARKER + r"(?=\s|$)", re.M),
]
# A line that goes on in the next piece: its marker is one only if a space follows it ("- - -"
# may go on as "- - -hello", which is text), and whole-line rules wait for the line's end.
_OPEN_LINE_MARKER = re.compile(_LINE_MARKER + r"(?=\s)")
_LINK = re.compile(r"!?\[([^\]\n]*)\]\([^)\s]*\)")
_EMOJI = re.compile(
    "\\s*[\U0001f000-\U0001faff\U00002600-\U000027bf\U0001f1e6-\U0001f1ff\ufe0f\u200d\u20e3]+"
)
_SPACES = re.compile(r"\s+")
_WHOLE_LINE = re.compile(r"(?:```|~~~|([-*_=])(?:[ \t]*\1)*[ \t]*(?=\n|$))")


def is_cjk(ch: str) -> bool:
    """Han ideographs and kana: scripts written without spaces between words."""
    return (
        "\u3040" <= ch <= "\u30ff"
        or "\u3400" <= ch <= "\u4dbf"
        or "\u4e00" <= ch <= "\u9fff"
        or "\uf900" <= ch <= "\ufaff"
    )


def clean_for_speech(text: str, *, strip_emoji: bool = True) -> str:
    """Text as it should be spoken: markdown markup, list markers and (optionally) emoji removed.

    Keeps link texts, inline code contents, numbers, URLs and e-mail addresses; collapses
    whitespace.
    """
    return _clean(text, starts_line=True, next_text="", strip_emoji=strip_emoji)


def _clean(text: str, *, starts_line: bool, next_text: str, strip_emoji: bool) -> str:
    """``text`` cleaned as a piece of a reply: its first line may have begun in the piece before
    (``starts_line`` False), and its last goes on in ``next_text`` unless it ends with a newline."""
    text = _apply_line_rules(text, starts_line=starts_line, next_text=next_text)
    text = _LINK.sub(r"\1", text).replace("*", "").replace("`", "")
    if strip_emoji:
        text = _EMOJI.sub("", text)
    return _SPACES.sub(" ", text).strip()


def _apply_line_rules(text: str, *, starts_line: bool, next_text: str) -> str:
    head, newline, rest = ("", "", text) if starts_line else text.partition("\n")
    if not starts_line and not newline:
        return text  # wholly inside a line that began earlier
    open_line = ""
    if next_text and not text.endswith("\n"):
        whole, last_newline, open_line = rest.rpartition("\n")
        rest = whole + last_newline
        open_line = _OPEN_LINE_MARKER.sub("", open_line + next_text[0])[:-1]
    for rule in _LINE_RULES:
        rest = rule.sub("", rest)
    return head + newline + rest + open_line


class TextChunker:
    """Rechunks LLM deltas into speakable pieces for TTS; one instance per reply.

    ``push`` returns the chunks completed by a delta, ``flush`` the rest at the end of the
    reply (and readies the chunker for the next one). Chunks are cleaned with
    :func:`clean_for_speech`; joined, they hold exactly the cleaned reply.
    """

    def __init__(
        self,
        *,
        min_first_words: int = 3,
        min_first_cjk_chars: int = 4,
        max_first_words: int = 10,
        max_first_cjk_chars: int = 10,
        max_chars: int = 200,
        strip_emoji: bool = True,
    ) -> None:
        if max_chars < 1:
            raise ValueError("max_chars must be positive")
        self.min_first_words = min_first_words
        self.min_first_cjk_chars = min_first_cjk_chars
        self.max_first_words = max_first_words  # 0: the first chunk waits for punctuation
        self.max_first_cjk_chars = max_first_cjk_chars
        self.max_chars = max_chars
        self.strip_emoji = strip_emoji
        self._buf = ""
        self._released = False
        self._line_start = True

    def push(self, delta: str) -> list[str]:
        """Add a delta; return the chunks it completed."""
        self._buf += delta
        chunks: list[str] = []
        while (end := self._next_end()) is not None:
            chunks += self._emit(end)
        return chunks

    def flush(self) -> list[str]:
        """End of the reply: return what is left, then start over."""
        chunks = self._emit(len(self._buf)) if self._buf else []
        self._released = False
        self._line_start = True
        return chunks

    def _next_end(self) -> int | None:
        """Where the next chunk ends, or None to wait for more text."""
        stripped = self._buf.lstrip()
        lead = len(self._buf) - len(stripped)
        at_line_start = self._line_start or "\n" in self._buf[:lead]
        if at_line_start and (line := _WHOLE_LINE.match(stripped)):
            newline = self._buf.find("\n", lead + line.end())
            return newline + 1 if newline >= 0 else None  # code fences and rules stay whole
        limit = lead + self.max_chars
        first = self._first_boundary()
        if first is not None and first[0] <= limit:
            return first[0] if first[1] else None
        if len(self._buf) > limit:
            return self._cut_point(lead, limit)
        return None

    def _first_boundary(self) -> tuple[int, bool] | None:
        """The earliest boundary as (end, confirmed); unconfirmed ones need more text."""
        early = None if self._released else self._early_cut()
        for end, kind in _candidates(self._buf, clauses=not self._released):
            if early is not None and early < end:
                return early, True
            if kind == "pending":
                return end, False
            if self._acceptable(end, first_clause=kind == "clause"):
                return end, True
        return None if early is None else (early, True)

    def _early_cut(self) -> int | None:
        """Where a first chunk without punctuation yet ends, so TTS can start (or None)."""
        cut = self._word_cut() if self.max_first_words else None
        if cut is None and self.max_first_cjk_chars:
            cut = self._cjk_cut()
        return cut if cut is not None and self._acceptable(cut, first_clause=False) else None

    def _word_cut(self) -> int | None:
        """Before a clause or phrase opener, or a verb after its subject, once
        ``min_first_words`` + 1 words are in, or after ``max_first_words`` words (at the first
        that may end a chunk) once the next has begun."""
        words, last = 0, ""
        for token in _COMPLETE_TOKEN.finditer(self._buf):
            if not any(ch.isalnum() and not is_cjk(ch) for ch in token.group()):
                continue
            bare = token.group().strip(OPENERS + CLOSERS + CLAUSE + SENTENCE_END).lower()
            if words > self.min_first_words and (
                bare in BREAK_BEFORE
                or (bare in BREAK_BEFORE_VERB and last not in NEVER_LAST | PRONOUNS)
            ):
                return token.start()
            words, last = words + 1, bare
            if words >= self.max_first_words and bare not in NEVER_LAST:
                after = self._buf[token.end() :].lstrip(" \t")
                return token.end() if after and after[0].isalnum() else None
        return None

    def _cjk_cut(self) -> int | None:
        """After ``max_first_cjk_chars`` Han characters, or after the last break particle from
        ``min_first_cjk_chars`` on; only once the next character (also Han) has arrived."""
        count, best = 0, None
        for i, ch in enumerate(self._buf):
            if not is_cjk(ch):
                continue
            count += 1
            if count >= self.min_first_cjk_chars and ch in CJK_BREAK_AFTER:
                best = i + 1
            if count >= self.max_first_cjk_chars:
                end = best or i + 1
                return end if end < len(self._buf) and is_cjk(self._buf[end]) else None
        return None

    def _cut_point(self, lead: int, limit: int) -> int | None:
        """Where to cut an over-long chunk: its last clause, else its last space, else hard."""
        window = self._buf[:limit]
        newline = window.rfind("\n")
        if newline >= lead and _WHOLE_LINE.match(self._buf[newline + 1 :].lstrip()):
            return newline + 1  # a code fence or rule starts here: never cut inside it
        clause_ends = [
            end
            for end, kind in _candidates(window, clauses=True)
            if kind != "pending" and self._acceptable(end, first_clause=False)
        ]
        if clause_ends:
            return clause_ends[-1]
        positions = range(limit, lead, -1)
        spaces = (pos for pos in positions if self._buf[pos].isspace())
        for pos in itertools.chain(spaces, positions):
            if self._acceptable(pos, first_clause=False):
                return pos
        # Nothing speakable fits: cut past the limit if needed to keep a link whole, and wait
        # while it is unfinished.
        ends = range(limit, len(self._buf))
        return next((pos for pos in ends if not _splits_link(self._buf, pos)), None)

    def _acceptable(self, end: int, *, first_clause: bool) -> bool:
        text = self._buf[:end]
        if not any(ch.isalnum() for ch in text) or _splits_link(self._buf, end):
            return False
        return not first_clause or self._long_enough(text)

    def _long_enough(self, text: str) -> bool:
        cjk = sum(1 for ch in text if is_cjk(ch))
        words = sum(
            1 for token in text.split() if any(ch.isalnum() and not is_cjk(ch) for ch in token)
        )
        return words >= self.min_first_words or cjk >= self.min_first_cjk_chars

    def _emit(self, end: int) -> list[str]:
        raw, self._buf = self._buf[:end], self._buf[end:]
        chunk = _clean(
            raw,
            starts_line=self._line_start,
            next_text=self._buf,
            strip_emoji=self.strip_emoji,
        )
        self._line_start = raw.endswith("\n")
        if not chunk:
            return []
        self._released = True
        return [chunk]


def _candidates(buf: str, *, clauses: bool) -> Iterator[tuple[int, str]]:
    """Possible chunk ends in order: (end, "sentence" | "clause" | "pending")."""
    i = 0
    while i < len(buf):
        ch = buf[i]
        if ch == "\n":
            yield i + 1, "sentence"
            i += 1
        elif ch in SENTENCE_END or ch in CJK_SENTENCE_END:
            j = _skip(buf, _skip(buf, i, SENTENCE_END + CJK_SENTENCE_END), CLOSERS)
            verdict = _sentence_verdict(buf, i, j)
            if verdict is not None:
                yield j, verdict
            i = j
        elif clauses and (ch in CLAUSE or ch in CJK_CLAUSE or ch in DASHES or ch == "-"):
            j = _skip(buf, _skip(buf, i, ch), CLOSERS)
            verdict = _clause_verdict(buf, i, j)
            if verdict is not None:
                yield j, verdict
            i = j
        else:
            i += 1


def _splits_link(buf: str, pos: int) -> bool:
    """Whether ending a chunk at ``pos`` would split a markdown link (which may be unfinished)."""
    head = buf[:pos]
    if head.count("[") > head.count("]") or head.rfind("](") > head.rfind(")"):
        return True
    if head.endswith("]") and buf[pos : pos + 1] in ("(", ""):
        return True
    return any(m.start() < pos < m.end() for m in _LINK.finditer(buf))


def _skip(buf: str, i: int, chars: str) -> int:
    while i < len(buf) and buf[i] in chars:
        i += 1
    return i


def _sentence_verdict(buf: str, i: int, j: int) -> str | None:
    if j >= len(buf):
        return "pending"
    if any(ch in CJK_SENTENCE_END for ch in buf[i:j]):
        return "sentence"
    if not (buf[j].isspace() or is_cjk(buf[j])):
        return None  # 3.14, example.com, Wait...what
    if buf[i:j] != ".":
        return "sentence"
    return _period_verdict(buf, i, j)


def _period_verdict(buf: str, i: int, j: int) -> str | None:
    line_start = buf.rfind("\n", 0, i) + 1
    word_start = max(line_start, *(buf.rfind(ws, 0, i) + 1 for ws in " \t"))
    word = buf[word_start:i].lstrip(OPENERS)
    if word.isdigit() and not buf[line_start:word_start].strip():
        return None  # "1. " list marker
    lowered = word.lower()
    if lowered in NEVER_END or (len(word) == 1 and word.isupper()):
        return None
    if lowered in MAYBE_END or _DOTTED.fullmatch(lowered):
        nxt = _skip(buf, j, " \t")
        if nxt >= len(buf):
            return "pending"
        follower = buf[nxt]
        return "sentence" if follower == "\n" or follower.isupper() or is_cjk(follower) else None
    return "sentence"


def _clause_verdict(buf: str, i: int, j: int) -> str | None:
    ch = buf[i]
    if ch == "-" and (j - i > 1 or i == 0 or buf[i - 1] not in " \t"):
        return None  # hyphens, "--" and line-start list markers
    if j >= len(buf):
        return "pending"
    nxt = buf[j]
    if ch in CJK_CLAUSE:
        return "clause"
    if ch in DASHES:
        digits = i > 0 and buf[i - 1].isdigit() and nxt.isdigit()
        return None if digits else "clause"
    return "clause" if nxt.isspace() or is_cjk(nxt) else None
