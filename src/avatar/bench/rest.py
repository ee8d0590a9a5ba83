"""`avatar bench rest`: the conversation REST routes over a large stored history.

Seeds N conversations (with turns of varied, realistic text and per-turn metrics) through the
storage layer itself (:class:`avatar.storage.conversations.Conversations`, the code the voice
pipeline stores turns with, in a few large transactions for speed) into a fresh data folder (or
an empty Postgres database), then starts the real server on it in a process of its own
(:func:`avatar.bench.load.spawned_server`, scripted engines, rate limits off) and times each
main route one request after another over loopback HTTP: listing (first and random pages),
search (a common word, a phrase, a rare word), one conversation, statistics, and export.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from avatar.bench.latency import percentile

# --- a realistic history -------------------------------------------------------------------------

CITIES = [
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Kenya", "Nairobi"),
    ("Canada", "Ottawa"),
    ("Peru", "Lima"),
    ("Norway", "Oslo"),
    ("Egypt", "Cairo"),
    ("Vietnam", "Hanoi"),
]
DISHES = ["pancakes", "risotto", "lentil soup", "banana bread", "fried rice", "guacamole"]
PLACES = ["Berlin", "Madrid", "Seattle", "Shanghai", "Melbourne", "Toronto", "Lagos"]
TOPICS: list[Callable[[random.Random], tuple[str, str, str]]] = [
    lambda r: (
        (c := r.choice(CITIES)) and f"What is the capital of {c[0]}?",
        f"The capital of {c[0]} is {c[1]}.",
        "en",
    ),
    lambda r: (
        (p := r.choice(PLACES)) and f"What's the weather like in {p} tomorrow?",
        f"I can't look up live weather, but {p} in this season is usually mild; "
        "take a jacket in case it rains.",
        "en",
    ),
    lambda r: (
        (d := r.choice(DISHES)) and f"How do I make {d} for four people?",
        f"For {d} for four, start with good ingredients, cook gently, taste as you go, "
        "and season at the end. Would you like a full recipe?",
        "en",
    ),
    lambda r: (
        (a := r.randint(2, 99), b := r.randint(2, 99)) and f"What is {a} times {b}?",
        f"{a} times {b} is {a * b}.",
        "en",
    ),
    lambda r: (
        (m := r.randint(5, 55)) and f"Remind me to call my sister in {m} minutes.",
        f"Okay, I'll remind you to call your sister in {m} minutes.",
        "en",
    ),
    lambda r: (
        "Can you explain photosynthesis simply?",
        "Plants take in light, water and carbon dioxide and turn them into sugar and oxygen. "
        "The green chlorophyll in their leaves catches the light.",
        "en",
    ),
    lambda r: (
        "How do you say good morning in Spanish?",
        "Good morning in Spanish is buenos días.",
        "en",
    ),
    lambda r: (
        "Tell me a short joke.",
        "Why did the scarecrow win an award? Because he was outstanding in his field.",
        "en",
    ),
    lambda r: (
        "今天天气怎么样？",
        "我查不到实时天气，不过出门前可以看看窗外，带把伞更保险。",
        "zh",
    ),
    lambda r: (
        "给我讲一个关于猫的故事。",
        "从前有一只小猫，它每天在窗台上晒太阳，看着鸟儿飞过。",
        "zh",
    ),
]
# Route label -> query. In the seeded history 'weather' is in ~10 % of turns (both sides),
# 'capital of France' in ~1.25 % (both sides), 'photosynthesis' in ~10 % (questions only).
SEARCHES = {
    "search: weather": "weather",
    "search: capital of France": "capital of France",
    "search: photosynthesis": "photosynthesis",
}


def make_turn(rng: random.Random) -> Any:
    """One stored exchange: texts, audio durations and the stage metrics a real turn carries."""
    from avatar.storage.inputs import NewTurn

    user, assistant, language = rng.choice(TOPICS)(rng)
    stt = rng.uniform(150, 1300)
    first_token = stt + rng.uniform(80, 900)
    first_text = first_token + rng.uniform(50, 800)
    tts = first_text + rng.uniform(40, 450)
    endpointing = rng.uniform(480, 560)
    interrupted = rng.random() < 0.05
    return NewTurn(
        user_text=user,
        assistant_text=assistant,
        heard_text=assistant[: len(assistant) // 2] if interrupted else None,
        language=language,
        interrupted=interrupted,
        user_audio_s=round(rng.uniform(1.2, 6.0), 2),
        assistant_audio_s=round(rng.uniform(1.5, 12.0), 2),
        metrics={
            "endpointing_ms": round(endpointing, 1),
            "user_speech_ms": round(rng.uniform(900, 5000), 1),
            "stt_ms": round(stt, 1),
            "llm_first_token_ms": round(first_token, 1),
            "first_text_ms": round(first_text, 1),
            "tts_first_audio_ms": round(tts, 1),
            "voice_to_voice_ms": round(tts + rng.uniform(1, 20), 1),
        },
    )


async def seed(
    database_url: str,
    conversations: int,
    *,
    turns: tuple[int, int] = (1, 12),
    batch: int = 500,
    seed_value: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[str], int]:
    """Store ``conversations`` sessions of ``turns`` (min, max) turns each; (ids, turn count).

    Rows go into the storage layer's own tables (migrated by :meth:`Database.migrate`, so the
    search index is filled by its triggers) as the repository would write them (title from the
    first question, turn numbers from 1, cleaned text), one multi-row INSERT per table and batch:
    ``Conversations.add_turn`` takes a round trip per turn, ~20x slower for 65,000 turns. The
    history is spread over the past (~50 min apart: 10,000 conversations in about a year), as a
    household's would be; the list and the search are ordered by time.
    """
    from sqlalchemy import insert

    from avatar.storage.common import clean_json, clean_text, utcnow
    from avatar.storage.db import Database
    from avatar.storage.inputs import make_title, new_session_id
    from avatar.storage.tables import ConversationRow, TurnRow

    rng = random.Random(seed_value)
    db = Database(database_url)
    await db.migrate()
    ids: list[str] = []
    stored = 0
    now = utcnow()
    try:
        for start in range(0, conversations, batch):
            count = min(batch, conversations - start)
            sessions: list[dict[str, Any]] = []
            rows: list[dict[str, Any]] = []
            for n in range(start, start + count):
                at = now - timedelta(minutes=(conversations - n) * 50)
                session_id = new_session_id()
                made = [make_turn(rng) for _ in range(rng.randint(*turns))]
                for index, turn in enumerate(made, start=1):
                    rows.append(
                        {
                            "session_id": session_id,
                            "index": index,
                            "created_at": at + timedelta(seconds=20 * index),
                            "user_text": clean_text(turn.user_text),
                            "assistant_text": clean_text(turn.assistant_text),
                            "heard_text": turn.heard_text,
                            "language": turn.language,
                            "interrupted": turn.interrupted,
                            "user_audio": None,
                            "assistant_audio": None,
                            "tts_mode": turn.tts_mode,
                            "user_audio_s": turn.user_audio_s,
                            "assistant_audio_s": turn.assistant_audio_s,
                            "metrics": clean_json(turn.metrics),
                        }
                    )
                sessions.append(
                    {
                        "id": session_id,
                        "created_at": at,
                        "updated_at": at + timedelta(seconds=20 * len(made)),
                        "title": make_title(made[0].user_text) if made else None,
                        "language": rng.choice(["en", "en", "zh", None]),
                        "voice_profile_id": None,
                        "tts_mode": "fast",
                        "turn_count": len(made),
                    }
                )
                ids.append(session_id)
                stored += len(made)
            async with db.write() as session:
                await session.execute(insert(ConversationRow), sessions)
                await session.execute(insert(TurnRow), rows)
            if on_batch:
                on_batch(count)
    finally:
        await db.dispose()
    return ids, stored


# --- the routes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    label: str
    method: str
    path: Callable[[random.Random, list[str]], str]


def routes(conversations: int) -> list[Route]:
    pages = max(1, conversations // 20)
    base = "/api/conversations"
    out = [
        Route("list: page 1", "GET", lambda r, ids: f"{base}/sessions?page=1&page_size=20"),
        Route(
            "list: random page",
            "GET",
            lambda r, ids: f"{base}/sessions?page={r.randint(1, pages)}&page_size=20",
        ),
    ]
    for label, query in SEARCHES.items():
        out.append(Route(label, "GET", lambda r, ids, q=query: f"{base}/sessions/search?query={q}"))
    out += [
        Route("one conversation", "GET", lambda r, ids: f"{base}/{r.choice(ids)}"),
        Route("stats", "GET", lambda r, ids: f"{base}/sessions/stats"),
        Route("export (json)", "POST", lambda r, ids: f"{base}/{r.choice(ids)}/export?format=json"),
        Route(
            "export (markdown)",
            "POST",
            lambda r, ids: f"{base}/{r.choice(ids)}/export?format=markdown",
        ),
    ]
    return out


@dataclass
class RouteResult:
    label: str
    ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    last_body: Any = None  # the last answer's JSON (or its size in bytes), for checks


def measure(
    url: str,
    token: str,
    ids: list[str],
    conversations: int,
    *,
    requests: int = 200,
    budget_s: float = 60.0,
    warmup: int = 3,
    on_request: Callable[[str], None] | None = None,
) -> list[RouteResult]:
    """Time ``requests`` requests per route, one at a time (at most ``budget_s`` a route)."""
    rng = random.Random(1)
    results = []
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120
    ) as client:
        for route in routes(conversations):
            result = RouteResult(route.label)
            for _ in range(warmup):  # connection, caches, first-call imports
                client.request(route.method, route.path(rng, ids))
            start = time.monotonic()
            for _ in range(requests):
                path = route.path(rng, ids)
                t = time.perf_counter()
                response = client.request(route.method, path)
                ms = (time.perf_counter() - t) * 1000
                if response.status_code == 200:
                    result.ms.append(round(ms, 2))
                    is_json = response.headers.get("content-type", "").startswith(
                        "application/json"
                    )
                    result.last_body = response.json() if is_json else len(response.content)
                else:
                    result.errors.append(f"{response.status_code} {path}: {response.text[:150]}")
                if on_request:
                    on_request(route.label)
                if time.monotonic() - start > budget_s:
                    break
            results.append(result)
    return results


def summarize(results: list[RouteResult]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        stats: dict[str, Any] = {"n": len(r.ms), "errors": len(r.errors)}
        if isinstance(r.last_body, dict) and "total" in r.last_body:
            stats["total"] = r.last_body["total"]  # conversations listed, or search hits
        if r.ms:
            stats |= {
                "p50": round(percentile(r.ms, 0.5), 1),
                "p95": round(percentile(r.ms, 0.95), 1),
                "p99": round(percentile(r.ms, 0.99), 1),
                "mean": round(sum(r.ms) / len(r.ms), 1),
            }
        out[r.label] = stats
    return out


def plot(results: list[RouteResult], path: Path, title: str) -> None:
    """One box per route (log scale), every request as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r.ms]
    fig, ax = plt.subplots(figsize=(10, 4.8))
    ax.boxplot([r.ms for r in shown], showfliers=False)
    for i, r in enumerate(shown, start=1):
        jitter = random.Random(i)
        xs = [i + jitter.uniform(-0.15, 0.15) for _ in r.ms]
        ax.scatter(xs, r.ms, s=5, alpha=0.3)
        ax.annotate(
            f"p95 {percentile(r.ms, 0.95):.0f}",
            (i, percentile(r.ms, 0.95)),
            textcoords="offset points",
            xytext=(12, 0),
            fontsize=7,
        )
    ax.set_xticks(range(1, len(shown) + 1), [r.label for r in shown], rotation=20, ha="right")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_ylabel("latency (ms, client-measured, loopback)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
