"""How often the embedded LLM answers in the user's language: old prompt vs per-language prompt.

Feeds real-style questions (Mandarin transcripts as Whisper writes them, English questions) to
the configured LLM with the single English prompt ("in the language the user speaks") and with
the prompt written for the turn's language (avatar.pipeline.prompts), and counts replies whose
letters are mostly Han characters (zh) or mostly Latin (en). One command, from the repo root:

    PYTHONPATH=src .venv/bin/python benchmarks/reply_language.py [--only per-language] [--tokens 40]
"""

from __future__ import annotations

import argparse
import asyncio
import re

from avatar.engines.base import ChatMessage, GenerationOptions
from avatar.engines.hub import EngineHub
from avatar.models.store import ModelStore
from avatar.pipeline.prompts import DEFAULT_PROMPT, localized_prompt
from avatar.settings import default_cache_dir, load_settings

QUESTIONS = {
    "zh": [
        "欢迎大家来体验达摩院推出的语音识别模型",
        "希望你以后能够做的比我还好呦。",
        "富士康在印度工廠出現了什麼問題？",
        "一个学生利用漏洞免费吃麦当劳，这样对吗？",
        "我想问一下明天台北的天气怎么样",
        "你可以帮我介绍一下长城吗",
        "請問咖啡和茶哪一個比較健康？",
        "怎么学好数学",
        "推荐一本好看的小说",
        "今天晚上吃什么好呢",
    ],
    "en": [
        "What is the capital of France?",
        "How do I boil an egg?",
        "Tell me a fun fact about octopuses.",
        "Why is the sky blue?",
        "Can you recommend a good book?",
    ],
}
_HAN = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")


def mostly(text: str, language: str) -> bool:
    han, latin = len(_HAN.findall(text)), len(_LATIN.findall(text))
    if language == "zh":
        return han > 0 and han >= 2 * latin  # a Latin word or two inside Chinese is fine
    return latin > 0 and han == 0


async def reply(hub: EngineHub, system: str, question: str, tokens: int) -> str:
    messages = [ChatMessage("system", system), ChatMessage("user", question)]
    options = GenerationOptions(max_tokens=tokens, temperature=0.2)
    return "".join([d async for d in hub.llm.stream_chat(messages, options)])


PROMPTS = {
    "single": lambda lang: DEFAULT_PROMPT,
    "per-language": lambda lang: localized_prompt(DEFAULT_PROMPT, lang),
}


async def main(only: str | None, tokens: int) -> None:
    settings = load_settings(data_dir="/tmp/avatar-bench-reply-language")
    hub = EngineHub(settings, ModelStore(default_cache_dir()))
    try:
        for name, prompt_for in PROMPTS.items():
            if only and name != only:
                continue
            for lang, questions in QUESTIONS.items():
                hits = 0
                for question in questions:
                    text = await reply(hub, prompt_for(lang), question, tokens)
                    hits += mostly(text, lang)
                    print(f"  [{lang}] {question[:24]} -> {text[:60]!r}", flush=True)
                print(f"{name}: {lang} {hits}/{len(questions)} replies in {lang}", flush=True)
    finally:
        hub.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=sorted(PROMPTS), help="one prompt kind only")
    parser.add_argument("--tokens", type=int, default=40, help="reply length (tokens)")
    args = parser.parse_args()
    asyncio.run(main(args.only, args.tokens))
