"""Search snippets: a window of the text around the first match, HTML-escaped, matches marked.

Built in Python rather than with FTS5 ``highlight()`` so that both backends give the same result
and every character outside ``<mark>`` is escaped, which makes the snippet safe to render.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

SNIPPET_CHARS = 160
ELLIPSIS = "…"


def match_spans(text: str, terms: Sequence[str]) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) of case-insensitive literal matches of any term."""
    if not terms:
        return []
    ordered = sorted({t for t in terms if t}, key=len, reverse=True)  # longest wins on overlap
    pattern = re.compile("|".join(re.escape(t) for t in ordered), re.IGNORECASE)
    return [m.span() for m in pattern.finditer(text)]


def _window(length: int, spans: list[tuple[int, int]], width: int) -> tuple[int, int]:
    if not spans or length <= width:
        return 0, min(length, width)
    start = max(0, spans[0][0] - width // 4)
    end = min(length, start + width)
    return max(0, end - width), end


def highlight(text: str, terms: Sequence[str], width: int = SNIPPET_CHARS) -> str:
    """Escape ``text`` for HTML and wrap every match of ``terms`` in ``<mark>…</mark>``."""
    spans = match_spans(text, terms)
    start, end = _window(len(text), spans, width)
    parts: list[str] = [ELLIPSIS] if start > 0 else []
    cursor = start
    for span_start, span_end in spans:
        if span_end <= start or span_start >= end:
            continue
        lo, hi = max(span_start, start), min(span_end, end)
        parts += [html.escape(text[cursor:lo]), "<mark>", html.escape(text[lo:hi]), "</mark>"]
        cursor = hi
    parts.append(html.escape(text[cursor:end]))
    if end < len(text):
        parts.append(ELLIPSIS)
    return "".join(parts)
