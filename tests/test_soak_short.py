"""A short soak through the load harness (avatar bench load): scripted engines on a server of its
own process, three voice sessions streaming real speech in real time plus REST traffic for 40 s.

A behaviour check with generous bounds, not a speed test: no errors, every session held,
turns answered, and server memory roughly flat once warm. scripts/soak.py runs it for 30 min.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from avatar.audio.encode import encode_wav
from avatar.audio.pcm import PcmAudio
from avatar.bench import latency as lat
from avatar.bench.load import LoadResult, LoadRun, spawned_server, summarize
from avatar.cli.load_cmd import plot
from avatar.engines.hub import EngineHub
from conftest import MODEL_CACHE

SESSIONS = 3
DURATION_S = 40.0
WARMUP_S = 10.0


@pytest.fixture(scope="module")
def clips(hub: EngineHub) -> list[lat.Clip]:
    return asyncio.run(lat.make_clips(hub))


@pytest.fixture(scope="module")
def soaked(clips: list[lat.Clip], tmp_path_factory: pytest.TempPathFactory) -> LoadResult:
    wav = encode_wav(PcmAudio.from_s16le(clips[0].pcm, 16_000))
    work = tmp_path_factory.mktemp("soak")
    with spawned_server(work, SESSIONS, fake_engines=True, model_cache=MODEL_CACHE) as target:
        run = LoadRun(target, clips, wav, SESSIONS, rest_rps=3.0)
        asyncio.run(run.run(DURATION_S))
    return run.result


def test_no_errors_and_every_session_held(soaked: LoadResult) -> None:
    summary = summarize(soaked, warmup_s=WARMUP_S)
    assert summary["errors"] == 0, summary["first_errors"]
    assert summary["sessions_refused"] == 0
    assert summary["sessions_held"] == {"min": SESSIONS, "max": SESSIONS}
    # Each session answers a question every few seconds (speech, endpointing, a short reply).
    assert summary["voice_to_voice_ms"]["n"] >= SESSIONS * 3
    # Every answered turn carries the server's metrics, so the server-added part is known.
    assert summary["server_added_ms"]["n"] == summary["voice_to_voice_ms"]["n"]
    assert summary["endpointing_ms"]["p50"] >= 400  # the 500 ms hangover, counted in audio time
    assert summary["rest_ms"]["n"] >= 30 and len(summary["rest_routes_ms"]) >= 5


def test_server_memory_stays_flat_once_warm(soaked: LoadResult) -> None:
    warm = [mb for t, mb in soaked.rss if t >= WARMUP_S]
    assert len(warm) >= 20
    # Generous: a leak of a buffer per turn or per request would show as steady growth.
    assert warm[-1] - warm[0] < 64, (warm[0], warm[-1])
    assert max(warm) - min(warm) < 128


def test_the_plot_is_written(soaked: LoadResult, tmp_path: Path) -> None:
    path = tmp_path / "load.png"
    plot(soaked, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
