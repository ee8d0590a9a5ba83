"""`avatar bench stt`: Whisper padded vs trimmed (error rate, time) on the fixed speech set.

Registered by cli/bench.py as ``app.command("stt")(stt_cmd.stt)``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from avatar.cli.console import console, err_console, settings, user_errors
from avatar.errors import ConfigError

GROUPS = ("questions", "human-en", "human-zh", "kokoro-zh")


@user_errors
def stt(
    models: str = typer.Option(
        "whisper-base",
        "--models",
        help="Whisper models (catalog names or folders), comma-separated.",
    ),
    groups: str = typer.Option(",".join(GROUPS), "--groups", help="Speech groups to run."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed decodes per utterance."),
    zh_dir: Path = typer.Option(
        Path("../shared/audio/zh"), "--zh-dir", help="Mandarin clips and their README."
    ),
    json_path: Path = typer.Option(
        Path("docs/benchmarks/stt.json"), "--json", help="Where to write the figures (JSON)."
    ),
) -> None:
    """WER/CER and time per utterance, Whisper padded to 30 s vs trimmed to the utterance."""
    from avatar.bench import stt as bench
    from avatar.engines.hub import EngineHub
    from avatar.engines.stt.whisper import load_instances

    chosen = [g.strip() for g in groups.split(",") if g.strip()]
    if unknown := set(chosen) - set(GROUPS):
        raise ConfigError(f"unknown group(s) {sorted(unknown)}", hint=f"use {', '.join(GROUPS)}")
    if "human-zh" in chosen and not (zh_dir / "README.md").is_file():
        raise ConfigError(f"no Mandarin clips at {zh_dir}", hint="pass --zh-dir")
    cfg = settings()
    hub = EngineHub(cfg)
    try:
        samples = _samples(chosen, hub, zh_dir)
        threads = cfg.stt.threads
        trimmed_threads = cfg.stt.trimmed_threads or threads

        loaded = {
            name: bench.Loaded(
                *load_instances(
                    hub.models.path(name), threads=threads, trimmed_threads=trimmed_threads
                )
            )
            for name in (m.strip() for m in models.split(","))
        }
    finally:
        hub.close()
    load_before = os.getloadavg()
    with _progress() as progress:
        task = progress.add_task("stt", total=len(samples) * len(loaded) * len(bench.MODES))

        def advance(label: str) -> None:
            progress.update(task, description=label)
            progress.advance(task)

        measures = bench.run(loaded, samples, repeats, advance)
    rows = bench.summarize(measures)
    _print(rows)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "threads": {"padded": threads, "trimmed": trimmed_threads},
        "repeats": repeats,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(
        json.dumps(bench.as_json(measures, rows, meta), ensure_ascii=False, indent=1)
    )
    err_console.print(f"load average before {load_before}, after {meta['loadavg_after']}")
    err_console.print(f"figures: {json_path}")


def _samples(groups: list[str], hub: object, zh_dir: Path) -> list:
    from avatar.bench import stt_set

    out = []
    if "questions" in groups:
        out += asyncio.run(stt_set.questions(hub))  # type: ignore[arg-type]
    if "human-en" in groups:
        out += stt_set.human_en()
    if "human-zh" in groups:
        out += stt_set.human_zh(zh_dir)
    if "kokoro-zh" in groups:
        out += asyncio.run(stt_set.kokoro_zh(hub.models))  # type: ignore[attr-defined]
    return out


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )


def _print(rows: list[dict]) -> None:
    table = Table("model", "group", "mode", "error %", "median ms", "max ms", "detect ms")
    table.add_column("fallbacks")
    table.add_column("wrong lang")
    table.add_column("n")
    for r in rows:
        table.add_row(
            r["model"],
            r["group"],
            r["mode"],
            f"{r['metric']} {r['error_rate_pct']:.1f}",
            f"{r['median_ms']:.0f}",
            f"{r['max_ms']:.0f}",
            f"{r['detect_median_ms']:.0f}",
            str(r["fallbacks"]),
            str(r["wrong_language"]),
            str(r["n"]),
        )
    console.print(table)
