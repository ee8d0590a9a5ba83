"""Soak test: hold voice sessions and REST traffic for a long time and watch server memory.

    .venv/bin/python scripts/soak.py                    # 30 min, 2 sessions, real engines
    .venv/bin/python scripts/soak.py --minutes 5 --fake-engines

Prints the server's RSS minute by minute, its growth per minute (least-squares slope after the
warm-up), errors and latencies; exits 1 if any request failed or memory grew faster than
``--max-growth`` MB a minute. tests/test_soak_short.py runs the same harness for 40 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from avatar.audio.encode import encode_wav  # noqa: E402
from avatar.audio.pcm import PcmAudio  # noqa: E402
from avatar.bench import latency as lat  # noqa: E402
from avatar.bench.load import LoadResult, LoadRun, spawned_server, summarize  # noqa: E402
from avatar.engines.hub import EngineHub  # noqa: E402
from avatar.settings import load_settings  # noqa: E402


def per_minute(result: LoadResult) -> list[tuple[int, float, float]]:
    """(minute, server RSS MB at its end, change since the minute before)."""
    rows, last = [], None
    for minute in range(1, int(result.duration_s // 60) + 1):
        at = [mb for t, mb in result.rss if t <= minute * 60]
        if not at:
            continue
        rows.append((minute, round(at[-1], 1), round(at[-1] - (last or at[0]), 1)))
        last = at[-1]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--rest-rps", type=float, default=2.0)
    parser.add_argument("--fake-engines", action="store_true")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds left out of the slope")
    parser.add_argument("--max-growth", type=float, default=None, help="fail above this MB/min")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=Path("docs/benchmarks/soak.png"))
    args = parser.parse_args()

    base = load_settings()
    clips = asyncio.run(lat.make_clips(EngineHub(base)))
    wav = encode_wav(PcmAudio.from_s16le(clips[0].pcm, 16_000))
    work = Path(tempfile.mkdtemp(prefix="avatar-soak-"))
    duration = args.minutes * 60
    print(
        f"soak: {args.sessions} sessions, {args.rest_rps} REST/s, {args.minutes:g} min", flush=True
    )
    with spawned_server(
        work, args.sessions, fake_engines=args.fake_engines, model_cache=base.model_cache_dir
    ) as target:
        run = LoadRun(target, clips, wav, args.sessions, args.rest_rps)

        printed = [-1]

        def tick(r: LoadRun) -> None:
            minute = int(r.now() // 60)
            if r.result.rss and minute > printed[0]:
                printed[0] = minute
                errors = sum(not s.ok for s in r.result.samples)
                cache = r.result.prompt_cache[-1][1] if r.result.prompt_cache else "-"
                print(
                    f"  {r.now() / 60:5.1f} min  server {r.result.rss[-1][1]:7.1f} MB  "
                    f"prompt cache {cache} MB  sessions {r.open}  errors {errors}",
                    flush=True,
                )

        asyncio.run(run.run(duration, tick))
    result = run.result
    summary = summarize(result, warmup_s=min(args.warmup, duration / 4))
    summary["rss_per_minute"] = per_minute(result)
    summary["prompt_cache_mb"] = result.prompt_cache
    summary["errors_at"] = [(s.t, s.kind, s.error) for s in result.samples if not s.ok]
    summary["turns_per_minute"] = [
        sum(1 for s in result.samples if s.kind == "turn" and s.ok and m * 60 <= s.t < m * 60 + 60)
        for m in range(int(duration // 60))
    ]
    print("\nminute  RSS MB  change  prompt cache MB")
    for minute, mb, change in summary["rss_per_minute"]:
        cache = [c for t, c in result.prompt_cache if t <= minute * 60]
        print(f"{minute:6d}  {mb:6.1f}  {change:+6.1f}  {cache[-1] if cache else '-':>6}")
    growth = summary["server_rss_mb"]["growth_mb_per_min"]
    print(f"\ngrowth after warm-up: {growth} MB/min")
    hidden = ("rss_per_minute", "prompt_cache_mb")
    print(json.dumps({k: v for k, v in summary.items() if k not in hidden}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    if args.plot:
        from avatar.cli.load_cmd import plot

        plot(result, args.plot)
        print(f"plot: {args.plot}")
    failed = summary["errors"] > 0
    if args.max_growth is not None and growth is not None and growth > args.max_growth:
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
