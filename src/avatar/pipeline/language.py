"""Which language a turn is in, and which script its Chinese is written in.

A session's ``language`` is either ``auto`` (follow the user: Whisper detects the language of
every utterance) or a tag that overrides detection: ``en``, ``zh``, ``zh-TW`` (Chinese in
Traditional characters), ``zh-CN`` (Simplified)... The turn's tag then picks the system prompt
(:mod:`avatar.pipeline.context`), the TTS voice, and the script of everything the user reads,
hears, and finds in the history (:mod:`avatar.text.script`).
"""

from __future__ import annotations

import re

from avatar.engines.tts.language import detect_text_language
from avatar.errors import AvatarError
from avatar.text.script import has_han, script_config

# Languages Whisper knows (ISO 639-1, plus haw and yue): what an override may name.
# fmt: off
_WHISPER_CODES = (
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw"
    " he hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt"
    " my ne nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl"
    " tr tt uk ur uz vi yi yo zh yue"
)
# fmt: on
KNOWN_LANGUAGES = frozenset(_WHISPER_CODES.split(" "))
_TAG = re.compile(r"^([a-z]{2,3})(?:-([a-z]{2}|[a-z]{4}))?$")
_CJK_TEXT = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_LATIN = re.compile(r"[A-Za-z]")


class InvalidLanguage(AvatarError):
    """A session language tag that names no language (or Chinese variant) AVATAR knows."""

    code = "invalid_language"
    http_status = 422


def session_language(tag: str) -> str | None:
    """A checked session language: None for ``auto``, else the tag in canonical case (``zh-TW``).

    Raises :class:`InvalidLanguage` for unknown languages and unknown Chinese variants.
    """
    lowered = tag.strip().replace("_", "-").lower()
    if lowered == "auto":
        return None
    match = _TAG.match(lowered)
    if match is None or match.group(1) not in KNOWN_LANGUAGES:
        raise InvalidLanguage(
            f"unknown language {tag!r}",
            hint="use 'auto', a language code such as 'en' or 'zh', or 'zh-TW' / 'zh-CN'",
        )
    primary, sub = match.groups()
    if primary == "zh" and sub is not None and script_config(lowered) is None:
        raise InvalidLanguage(
            f"unknown Chinese variant {tag!r}",
            hint="use zh-TW or zh-Hant (Traditional), zh-CN or zh-Hans (Simplified), or zh-HK",
        )
    if sub is None:
        return primary
    return f"{primary}-{sub.upper() if len(sub) == 2 else sub.title()}"


def stt_language(language: str | None) -> str | None:
    """What the STT engine is told: the primary subtag (``zh-TW`` → ``zh``), None to detect."""
    return language.split("-", 1)[0] if language else None


def turn_language(configured: str | None, detected: str | None, text: str) -> str:
    """The language of a turn: the configured override, else what was detected in ``text``.

    Whisper's guess is checked against the text's script, since a short utterance is sometimes
    labelled with a neighbour: Han text without kana under ``ja`` is Chinese, Latin-only text
    under a CJK language is not CJK, CJK text under a Latin-script language is CJK.
    """
    if configured:
        return configured
    guess = detected or detect_text_language(text)
    cjk, latin = len(_CJK_TEXT.findall(text)), len(_LATIN.findall(text))
    by_script = detect_text_language(text)
    if guess in ("zh", "ja", "ko", "yue") and cjk == 0 and latin > 0:
        return by_script
    if guess not in ("zh", "ja", "ko", "yue") and cjk > latin:
        return by_script
    if guess == "ja" and by_script == "zh":
        return "zh"
    return "zh" if guess == "yue" and has_han(text) else guess


def with_chinese_script(language: str, script: str | None) -> str:
    """``zh`` (detected or configured without a region) as the script the user reads:
    ``traditional`` → ``zh-TW``, ``simplified`` → ``zh-CN``; any other language as it is."""
    if language != "zh" or script is None:
        return language
    return "zh-TW" if script == "traditional" else "zh-CN"
