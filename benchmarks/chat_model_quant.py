"""The chat model as packaged (Q4_K_M, mostly Q5_0) against its IQ4_NL requantization.

Per catalog model: the time to read a user's 15 words, the 6 template tokens after them and one
decoded token (llama.cpp, 2 threads); how often each model's top next token agrees with the
first's, and their mean KL divergence, over 3 replies (English and Mandarin); and answers to 34
short factual questions (24 English, 10 Mandarin), greedy, checked for a keyword.

    PYTHONPATH=src .venv/bin/python benchmarks/chat_model_quant.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import llama_cpp
import numpy as np

from avatar.engines.base import GenerationOptions
from avatar.engines.hub import EngineHub
from avatar.pipeline.context import ConversationContext
from avatar.settings import load_settings

MODELS = ("qwen2.5-coder-0.5b-instruct-q4_k_m", "qwen2.5-coder-0.5b-instruct")
# (language, question, any of these in a right answer)
QA = [
    ("en", "What is the capital of France?", ["paris"]),
    ("en", "How many days are in a week?", ["7", "seven"]),
    ("en", "How many months are in a year?", ["12", "twelve"]),
    ("en", "What color is the sky on a clear day?", ["blue"]),
    ("en", "What do bees make?", ["honey"]),
    ("en", "What is the capital of Japan?", ["tokyo"]),
    ("en", "How many legs does a spider have?", ["8", "eight"]),
    ("en", "Which planet is closest to the sun?", ["mercury"]),
    ("en", "What is the tallest mountain in the world?", ["everest"]),
    ("en", "Who wrote Romeo and Juliet?", ["shakespeare"]),
    ("en", "How many minutes are in an hour?", ["60", "sixty"]),
    ("en", "What is the largest ocean on Earth?", ["pacific"]),
    ("en", "At what temperature does water boil in Celsius?", ["100"]),
    ("en", "What language is spoken in Brazil?", ["portuguese"]),
    ("en", "What is two plus three?", ["5", "five"]),
    ("en", "What is frozen water called?", ["ice"]),
    ("en", "What gas do plants take in from the air?", ["carbon dioxide", "co2"]),
    ("en", "What is the capital of Italy?", ["rome"]),
    ("en", "How many hours are in a day?", ["24", "twenty-four"]),
    ("en", "What animal is known as the king of the jungle?", ["lion"]),
    ("en", "What is the opposite of hot?", ["cold"]),
    ("en", "In which country are the pyramids of Giza?", ["egypt"]),
    ("en", "What do you call a baby cat?", ["kitten"]),
    ("en", "How many continents are there?", ["7", "seven"]),
    ("zh", "中国的首都是哪里？", ["北京"]),
    ("zh", "一年有几个月？", ["12", "十二"]),
    ("zh", "一个星期有几天？", ["7", "七"]),
    ("zh", "蜜蜂会做什么？", ["蜂蜜"]),
    ("zh", "日本的首都是哪里？", ["东京"]),
    ("zh", "一天有多少个小时？", ["24", "二十四"]),
    ("zh", "太阳从哪边升起？", ["东"]),
    ("zh", "水结冰后叫什么？", ["冰"]),
    ("zh", "一小时有多少分钟？", ["60", "六十"]),
    ("zh", "熊猫最喜欢吃什么？", ["竹"]),
]
TEXTS = [
    "<|im_start|>system\nYou are a helpful voice assistant. Answer briefly.<|im_end|>\n<|im_start|>user\nWhat is the tallest mountain in the world?<|im_end|>\n<|im_start|>assistant\nThe tallest mountain in the world is Mount Everest, in the Himalayas on the border of Nepal and China. Its summit is 8,849 metres above sea level. Many climbers attempt it every spring, when the weather is calmest.<|im_end|>\n<|im_start|>user\nAnd how long does it take to climb it?<|im_end|>\n<|im_start|>assistant\nMost expeditions take about two months, because climbers need weeks to get used to the thin air before they try for the top.",  # noqa: E501
    "<|im_start|>system\n你是一个乐于助人的语音助手。请用中文简短回答。<|im_end|>\n<|im_start|>user\n北京有哪些著名的景点？<|im_end|>\n<|im_start|>assistant\n北京有很多著名的景点，比如故宫、长城、天坛和颐和园。故宫是明清两代的皇宫，长城是世界上最长的古代防御工程。春天和秋天是去北京旅游最好的季节。<|im_end|>",  # noqa: E501
    "<|im_start|>system\nYou are a helpful voice assistant. Answer briefly.<|im_end|>\n<|im_start|>user\nCan you explain why the sky is blue?<|im_end|>\n<|im_start|>assistant\nSunlight is made of many colours. When it passes through the air, the short blue waves are scattered in every direction by the gas molecules much more than the longer red waves, so blue light reaches our eyes from all over the sky. At sunset the light travels through more air, the blue is scattered away, and we see reds and oranges instead.",  # noqa: E501
]


def speed(path: str) -> dict[str, float]:
    llm = llama_cpp.Llama(path, n_ctx=1024, n_threads=2, n_threads_batch=2, verbose=False)
    system = b"<|im_start|>system\nYou are a helpful assistant. Answer briefly.<|im_end|>\n"
    base = llm.tokenize(system, special=True)
    user = b"<|im_start|>user\nWhat is the largest ocean on Earth and how deep is it"
    words = llm.tokenize(user, add_bos=False, special=True)
    tail = llm.tokenize(b"?<|im_end|>\n<|im_start|>assistant\n", add_bos=False, special=True)
    llm.eval(base)
    times: dict[str, list[float]] = {"words": [], "template": [], "token": []}
    for rep in range(6):
        llm.n_tokens = len(base)
        t0 = time.perf_counter()
        llm.eval(words)
        t1 = time.perf_counter()
        llm.eval(tail)
        t2 = time.perf_counter()
        for _ in range(6):
            t3 = time.perf_counter()
            llm.eval([tail[-1]])
            if rep:
                times["token"].append(time.perf_counter() - t3)
        if rep:  # the first is a warm-up
            times["words"].append(t1 - t0)
            times["template"].append(t2 - t1)
    return {k: round(statistics.median(v) * 1000, 1) for k, v in times.items()}


def logits(path: str) -> list[tuple[list[int], np.ndarray]]:
    llm = llama_cpp.Llama(path, n_ctx=1024, n_threads=2, logits_all=True, verbose=False)
    out = []
    for text in TEXTS:
        tokens = llm.tokenize(text.encode(), special=True)
        llm.reset()
        llm.eval(tokens)
        out.append((tokens, np.array(llm.scores[: len(tokens)], dtype=np.float64)))
    return out


def agreement(first: list, other: list) -> tuple[float, float]:
    """Top-1 agreement (%) and mean KL(first || other) over every position."""
    agree, kls = 0, []
    for (tokens, a), (_, b) in zip(first, other, strict=True):
        for i in range(len(tokens) - 1):
            pa = np.exp(a[i] - a[i].max())
            pb = np.exp(b[i] - b[i].max())
            pa, pb = pa / pa.sum(), pb / pb.sum()
            kls.append(float(np.sum(pa * (np.log(pa + 1e-12) - np.log(pb + 1e-12)))))
            agree += int(a[i].argmax() == b[i].argmax())
    return 100 * agree / len(kls), float(np.mean(kls))


async def answers(name: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    s = load_settings(llm={"model": name})
    llm = EngineHub(s).llm
    right = {"en": 0, "zh": 0}
    wrong = []
    for language, question, keys in QA:
        context = ConversationContext(s.llm.system_prompt, 2000, llm.count_tokens)
        context.language = language
        said = ""
        options = GenerationOptions(max_tokens=40, temperature=0.0)
        async for delta in llm.stream_chat(context.with_user(question), options):
            said += delta
        if any(k in said.lower() for k in keys):
            right[language] += 1
        else:
            wrong.append((question, said.replace("\n", " ")))
    return right, wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    names = [m for m in parser.parse_args().models.split(",") if m]
    hub = EngineHub(load_settings())
    paths = {name: str(hub.models.path(name)) for name in names}
    speeds = {name: speed(paths[name]) for name in names}  # first: nothing else loaded yet
    first = logits(paths[names[0]])
    for name in names:
        top1, kl = agreement(first, logits(paths[name]))
        right, wrong = asyncio.run(answers(name))
        total = sum(1 for q in QA if q[0] == "en"), sum(1 for q in QA if q[0] == "zh")
        print(f"{name}: {speeds[name]} ms; top-1 agreement with {names[0]} {top1:.1f} %,")
        print(
            f"  mean KL {kl:.4f}; right {right['en']}/{total[0]} English, {right['zh']}/{total[1]}"
            " Mandarin"
        )
        for question, said in wrong:
            print(f"  wrong: {question} -> {said[:80]}")


if __name__ == "__main__":
    main()
