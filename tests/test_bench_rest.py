"""The REST benchmark (`avatar bench rest`) in a tiny form: 50 conversations, a few requests.

Checks what it seeds and that every route answers with real rows; no timing asserts (the
figures are in docs/RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from avatar.bench import rest as bench
from avatar.bench.load import spawned_server
from avatar.storage.conversations import Conversations
from avatar.storage.db import Database

CONVERSATIONS = 50


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], int]:
    work = tmp_path_factory.mktemp("rest")
    url = f"sqlite+aiosqlite:///{work / 'avatar.db'}"
    batches: list[int] = []
    ids, turns = asyncio.run(bench.seed(url, CONVERSATIONS, batch=20, on_batch=batches.append))
    assert batches == [20, 20, 10]
    return work, ids, turns


def test_seed_stores_conversations_with_turns(seeded: tuple[Path, list[str], int]) -> None:
    work, ids, turns = seeded
    assert len(set(ids)) == CONVERSATIONS
    assert CONVERSATIONS <= turns <= CONVERSATIONS * 12

    async def read() -> tuple[int, int, object]:
        db = Database(f"sqlite+aiosqlite:///{work / 'avatar.db'}")
        try:
            async with db.read() as session:
                repo = Conversations(session)
                stats = await repo.stats()
                oldest = await repo.get_session(ids[0])
                newest = await repo.get_session(ids[-1])
                assert oldest.updated_at < newest.updated_at  # history spread over time
                assert oldest.turns and oldest.turns[0].metrics["voice_to_voice_ms"] > 0
                return stats.sessions, stats.turns, stats.metrics.get("stt_ms")
        finally:
            await db.dispose()

    sessions, stored, stt = asyncio.run(read())
    assert (sessions, stored) == (CONVERSATIONS, turns)
    assert stt is not None


def test_every_route_answers_with_rows(seeded: tuple[Path, list[str], int]) -> None:
    work, ids, turns = seeded
    with spawned_server(work, 1, fake_engines=True) as target:
        results = bench.measure(target.url, target.token, ids, CONVERSATIONS, requests=5)
    by_label = {r.label: r for r in results}
    assert set(by_label) == {r.label for r in bench.routes(CONVERSATIONS)}
    for result in results:
        assert result.errors == [], result.errors
        assert len(result.ms) == 5
    assert by_label["list: page 1"].last_body["total"] == CONVERSATIONS
    assert len(by_label["list: page 1"].last_body["items"]) == 20
    for label in bench.SEARCHES:
        assert by_label[label].last_body["total"] > 0, label
        assert "<mark>" in by_label[label].last_body["items"][0]["snippet"]
    assert by_label["one conversation"].last_body["turns"]
    assert by_label["stats"].last_body["turns"] == turns
    assert by_label["export (json)"].last_body["session"]["turns"]
    assert by_label["export (markdown)"].last_body > 0  # bytes of Markdown
    summary = bench.summarize(results)
    assert all(s["n"] == 5 and s["p50"] <= s["p99"] for s in summary.values())


def test_the_plot_is_written(tmp_path: Path) -> None:
    results = [bench.RouteResult("a", [1.0, 2.0, 3.0]), bench.RouteResult("b", [10.0, 20.0])]
    path = tmp_path / "rest.png"
    bench.plot(results, path, "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
