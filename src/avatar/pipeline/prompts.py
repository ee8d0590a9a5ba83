"""The system prompt, written for the language of the turn.

The embedded 0.5B model ignores "answer in the language the user speaks" (issue 14: Chinese
questions got English answers) but follows a prompt written in the language it should answer in.
So the built-in prompt is replaced by its version in the turn's language (Chinese in the user's
script), and a custom prompt gets one line in that language asking for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from avatar.settings import LlmSettings
from avatar.text.script import script_config

DEFAULT_PROMPT: str = LlmSettings.model_fields["system_prompt"].default


@dataclass(frozen=True, slots=True)
class LanguagePrompt:
    """The built-in prompt in one language, and the line added to a custom prompt."""

    prompt: str
    instruction: str


_EN = LanguagePrompt(
    "You are AVATAR, a helpful voice assistant. Answer briefly in plain spoken English sentences.",
    "Answer in English.",
)
_PROMPTS = {
    "en": _EN,
    "zh-Hans": LanguagePrompt(
        "你是AVATAR，一个乐于助人的语音助手。请用简体中文简短地回答，使用自然的口语句子，不要用英文。",
        "请用简体中文回答。",
    ),
    "zh-Hant": LanguagePrompt(
        "你是AVATAR，一個樂於助人的語音助理。請用繁體中文簡短地回答，使用自然的口語句子，不要用英文。",
        "請用繁體中文回答。",
    ),
    "ja": LanguagePrompt(
        "あなたはAVATAR、親切な音声アシスタントです。日本語で、短く自然な話し言葉で答えてください。",
        "日本語で答えてください。",
    ),
    "ko": LanguagePrompt(
        "당신은 친절한 음성 비서 AVATAR입니다. 한국어로 짧고 자연스러운 말투로 답하세요.",
        "한국어로 답하세요.",
    ),
}
# English names for the fallback prompt of the other languages.
_NAMES = {
    "ar": "Arabic", "de": "German", "es": "Spanish", "fr": "French", "hi": "Hindi",
    "id": "Indonesian", "it": "Italian", "nl": "Dutch", "pl": "Polish", "pt": "Portuguese",
    "ru": "Russian", "th": "Thai", "tr": "Turkish", "uk": "Ukrainian", "vi": "Vietnamese",
}  # fmt: skip


def language_prompt(language: str | None) -> LanguagePrompt | None:
    """The prompt for a language tag; None when unknown (the configured prompt stays as is)."""
    if not language:
        return None
    primary = language.split("-", 1)[0].lower()
    if primary in ("zh", "yue"):
        config = script_config(language) or "t2s"
        return _PROMPTS["zh-Hant" if config.startswith("s2") else "zh-Hans"]
    if primary in _PROMPTS:
        return _PROMPTS[primary]
    name = _NAMES.get(primary)
    if name is None:
        return None
    return LanguagePrompt(
        f"You are AVATAR, a helpful voice assistant. The user speaks {name}: answer briefly in"
        f" plain spoken sentences, in {name} only.",
        f"Answer in {name}.",
    )


def localized_prompt(prompt: str, language: str | None) -> str:
    """``prompt`` for a turn in ``language``: the built-in one replaced, a custom one extended."""
    chosen = language_prompt(language)
    if chosen is None:
        return prompt
    if prompt.strip() == DEFAULT_PROMPT:
        return chosen.prompt
    return f"{prompt.rstrip()}\n{chosen.instruction}"
