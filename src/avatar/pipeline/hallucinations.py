"""Drop transcripts that Whisper-style STT invents on non-speech (noise, music, silence).

Three kinds are dropped:

- always: empty or punctuation-only text, sound annotations (``[Music]``, ``(upbeat music)``,
  ``♪``), subtitle credits and channel promos (``Subtitles by the Amara.org community``,
  ``字幕由Amara.org社区提供``), and long repeated-n-gram loops;
- when the audio was probably not speech (high no-speech probability, or very short speech):
  common short phrases such as ``Thank you.``, ``you``, ``Bye.``, ``谢谢观看``, and short loops.

A real "thank you" in clear speech is kept.

Dropping is silent only for short sounds (a cough, a click, "uh"). When the endpointer measured
long speech and nothing usable came back, :func:`unheard_speech` raises
:class:`SpeechNotRecognized`, sent to the client as a typed ``error`` event: a turn never
vanishes without a word (issue 14: 9.5 s of Mandarin gave no transcript, no reply, no error).
"""

from __future__ import annotations

import re
import unicodedata

from avatar.errors import AvatarError
from avatar.pipeline.chunker import is_cjk

# Sound annotations Whisper writes for non-speech: [Music], (upbeat music), *laughs*, 【音乐】.
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|（[^）]*）|【[^】]*】|\*[^*]*\*")
_MUSIC = frozenset("♪♫♬♩🎵🎶")

# Matched as substrings of the key (casefolded letters and digits only).
_ALWAYS = (
    "amaraorg",
    "subtitlesby",
    "subtitledby",
    "captionsby",
    "transcriptionby",
    "transcribedby",
    "castingwords",
    "字幕由",
    "字幕提供",
    "字幕志愿者",
    "字幕志願者",
    "字幕by",
    "请不吝点赞",
    "請不吝點贊",
    "明镜与点点",
    "明鏡與點點",
    "優優獨播劇場",
    "优优独播剧场",
    "yoyotelevisionseries",
    "小铃铛",  # "turn on the little bell" (subscribe): Whisper's Mandarin noise phrase
    "小鈴鐺",
    "likeandsubscribe",
    "pleasesubscribe",
    "dontforgettosubscribe",
    "ご視聴ありがとうございました",
    "チャンネル登録",
)
# Matched as the whole key.
# fmt: off
_LIKELY = frozenset((
    "thankyou", "thanks", "thankyouverymuch", "thankyousomuch", "thanksforwatching",
    "thankyouforwatching", "thanksforlistening", "thankyouforlistening", "seeyounexttime",
    "seeyou", "you", "bye", "byebye", "goodbye", "so", "oh", "uh", "um", "hmm", "mm", "the", "i",
    "a", "well",
    "谢谢", "謝謝", "谢谢观看", "謝謝觀看", "谢谢收看", "謝謝收看", "谢谢大家", "謝謝大家",
    "感谢观看", "感謝觀看", "我们下期再见", "我們下期再見", "下期再见",
    "再见", "再見", "拜拜", "嗯",
    "ありがとうございました", "ありがとう", "おやすみなさい",
))
# fmt: on

_NO_SPEECH_LIKELY = 0.6
_NO_SPEECH_SUSPECT = 0.3
_VERY_SHORT_MS = 350.0
_SHORT_MS = 1000.0
_MAX_NGRAM = 16
# Voiced speech at least this long is never dropped in silence (a long cough or laugh is rare;
# a sentence heard as nothing must be said again, so the user has to be told).
REPORT_UNHEARD_MS = 1500.0


class SpeechNotRecognized(AvatarError):
    """The user spoke, but speech recognition made out no words (or only invented ones)."""

    code = "speech_not_recognized"
    http_status = 422


def unheard_speech(speech_ms: float | None, text: str) -> None:
    """Raise :class:`SpeechNotRecognized` when ``speech_ms`` of speech gave no usable ``text``.

    Call it for a transcript that was empty or judged invented; short sounds pass silently.
    """
    if speech_ms is None or speech_ms < REPORT_UNHEARD_MS:
        return
    heard = f" (only {text.strip()[:40]!r}, which speech recognition invents on noise)"
    raise SpeechNotRecognized(
        f"heard {speech_ms / 1000:.1f} s of speech but could not make out any words"
        + (heard if text.strip() else ""),
        hint="please say it again, closer to the microphone or with less background noise",
    )


def is_hallucination(
    text: str, *, no_speech_probability: float = 0.0, speech_ms: float | None = None
) -> bool:
    """Whether ``text`` is most likely invented by the STT model rather than said.

    ``no_speech_probability`` is the model's own estimate (Whisper's ``no_speech_prob``);
    ``speech_ms`` the voiced duration the endpointer measured, when known.
    """
    if any(ch in _MUSIC for ch in text):
        return True
    spoken = _ANNOTATION.sub(" ", unicodedata.normalize("NFKC", text))
    key = _key(spoken)
    if not key or any(phrase in key for phrase in _ALWAYS):
        return True
    tokens = _tokens(spoken)
    if len(tokens) >= 8 and _loop_coverage(tokens, min_repeats=4) >= 0.6:
        return True
    if not _probably_not_speech(no_speech_probability, speech_ms):
        return False
    return key in _LIKELY or _loop_coverage(tokens, min_repeats=3) >= 0.6


def _probably_not_speech(no_speech_probability: float, speech_ms: float | None) -> bool:
    if no_speech_probability >= _NO_SPEECH_LIKELY:
        return True
    if speech_ms is None:
        return False
    suspect = no_speech_probability >= _NO_SPEECH_SUSPECT and speech_ms < _SHORT_MS
    return speech_ms < _VERY_SHORT_MS or suspect


def _key(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _tokens(text: str) -> list[str]:
    """Words, with each CJK character a word of its own."""
    spaced = "".join(f" {ch} " if is_cjk(ch) else ch for ch in text.casefold())
    return [_key(word) for word in spaced.split() if _key(word)]


def _loop_coverage(tokens: list[str], *, min_repeats: int) -> float:
    """The largest share of tokens covered by one n-gram repeated ``min_repeats``+ times."""
    best = 0.0
    for n in range(1, min(_MAX_NGRAM, len(tokens) // min_repeats) + 1):
        for start in range(len(tokens) - min_repeats * n + 1):
            gram = tokens[start : start + n]
            repeats = 1
            while tokens[start + repeats * n : start + (repeats + 1) * n] == gram:
                repeats += 1
            if repeats >= min_repeats:
                best = max(best, repeats * n / len(tokens))
    return best
