"""Crash soak: SIGKILL the real server N times under traffic and check nothing acknowledged is lost.

    .venv/bin/python scripts/crash_soak.py --kills 200 --seed 7
    .venv/bin/python scripts/crash_soak.py --kills 50 --database-url postgresql+asyncpg://…/db

Each cycle: start `avatar serve --no-preload` on the same data folder, check the database's
integrity, rows against audio files, leftovers of the last crash (orphans, temps) and every
acknowledged write; run the repair step (unless --no-repair); drive voice turns, voice-profile
uploads and deletes; SIGKILL at a random moment. Exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from avatar.engines.hub import EngineHub  # noqa: E402
from avatar.settings import load_settings  # noqa: E402
from avatar.testing.crash import MOMENTS, CrashHarness, Cycle, make_speech  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=200, help="SIGKILLs (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (delays, traffic mix)")
    parser.add_argument("--max-delay", type=float, default=4.0, help="longest random delay, s")
    parser.add_argument(
        "--weights",
        default="0.1,0.3,0.6",
        help=f"relative odds of the kill moments {','.join(MOMENTS)}",
    )
    parser.add_argument("--no-repair", action="store_true", help="skip the repair step")
    parser.add_argument(
        "--require-clean-start",
        action="store_true",
        help="count orphan/temp files left after the server's own start-up as violations",
    )
    parser.add_argument("--database-url", help="a fresh Postgres database instead of SQLite")
    parser.add_argument("--workdir", type=Path, help="keep data and logs here (default: temp)")
    args = parser.parse_args()
    weights = tuple(float(w) for w in args.weights.split(","))
    if len(weights) != len(MOMENTS):
        parser.error(f"--weights needs {len(MOMENTS)} numbers")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="avatar-crash-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {workdir}", flush=True)

    hub = EngineHub(load_settings(data_dir=workdir / "hub"))
    try:
        clips = asyncio.run(make_speech(hub))
    finally:
        hub.close()
    harness = CrashHarness(
        workdir,
        clips,
        seed=args.seed,
        max_delay_s=args.max_delay,
        weights=weights,  # type: ignore[arg-type]
        repair_after_start=not args.no_repair,
        require_clean_start=args.require_clean_start,
        database_url=args.database_url,
    )
    report = asyncio.run(harness.run(args.kills, _progress))
    print(report.summary())
    if report.problems:
        print(f"server log: {workdir / 'server.log'}", file=sys.stderr)
    return 1 if report.problems else 0


def _progress(cycle: Cycle) -> None:
    status = "FAIL" if cycle.problems else "ok"
    found = f", {len(cycle.found)} left at start" if cycle.found else ""
    print(
        f"[{cycle.index:4d}] {cycle.moment:10s} start {cycle.start_s:4.1f} s, kill after "
        f"{cycle.delay_s:5.2f} s, drain {cycle.drain_s:3.1f} s: "
        f"{cycle.acks} acks{found} — {status}",
        flush=True,
    )
    for problem in cycle.problems:
        print(f"       {problem}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
