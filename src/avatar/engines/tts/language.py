"""Language helpers shared by the TTS engines: tag normalisation, script detection, sentences.

Also the two input errors TTS engines raise: empty text and a language no voice speaks.
"""

from __future__ import annotations

import re

from avatar.errors import AvatarError


class EmptyText(AvatarError):
    """The text to speak is empty or only whitespace."""

    code = "tts_empty_text"
    http_status = 422


class UnsupportedLanguage(AvatarError):
    """No voice of the engine speaks the requested language."""

    code = "tts_language_unsupported"
    http_status = 422


_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CJK = re.compile(f"{_KANA.pattern}|{_HANGUL.pattern}|{_HAN.pattern}")
_CJK_LANGUAGES = frozenset({"zh", "ja", "ko", "yue", "cmn"})
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
# A sentence ends at . ! ? (followed by space or end) or at CJK full stops; the mark stays.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？；])")


def normalize_language(tag: str) -> str:
    """Lower-case BCP-47 with '-' separators: 'zh_CN' -> 'zh-cn', ' EN ' -> 'en'."""
    return tag.strip().replace("_", "-").lower()


def primary_language(tag: str) -> str:
    """The primary subtag: 'zh-CN' -> 'zh', 'pt_BR' -> 'pt'."""
    return normalize_language(tag).split("-", 1)[0]


def detect_text_language(text: str) -> str:
    """A cheap script-based guess: kana -> 'ja', Hangul -> 'ko', Han -> 'zh', else 'en'.

    Kana is checked before Han because Japanese mixes kanji with kana. Latin-script languages
    are not told apart: use it only when the reply language is unknown.
    """
    if _KANA.search(text):
        return "ja"
    if _HANGUL.search(text):
        return "ko"
    if _HAN.search(text):
        return "zh"
    return "en"


def speech_language(language: str, text: str) -> str:
    """The language to speak ``text`` in: ``language``, unless it is empty/'auto', or the reply
    switched script: mostly-CJK text under 'en', or Latin-only text under zh/ja/ko."""
    lang = normalize_language(language or "auto")
    if lang == "auto":
        return detect_text_language(text)
    cjk, latin = len(_CJK.findall(text)), len(_LATIN.findall(text))
    primary = primary_language(lang)
    if primary == "en" and cjk > latin:
        return detect_text_language(text)
    if primary in _CJK_LANGUAGES and cjk == 0 and latin > 0:
        return "en"
    return lang


def require_text(text: str) -> str:
    """``text`` stripped, or :class:`EmptyText` when nothing is left to speak."""
    stripped = text.strip()
    if not stripped:
        raise EmptyText(
            "nothing to synthesize: the text is empty",
            hint="give at least one word to say",
        )
    return stripped


def split_sentences(text: str) -> list[str]:
    """Split on sentence-final punctuation (Latin and CJK); empty pieces are dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
