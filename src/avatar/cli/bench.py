"""`avatar bench …`: measurements on this machine, as tables (figures go in BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import typer
from rich.progress import Progress
from rich.table import Table

from avatar.cli import faults_cmd, load_cmd, rest_cmd, stt_cmd
from avatar.cli.console import console, err_console, settings, user_errors

app = typer.Typer(help="Benchmarks.", no_args_is_help=True)
app.command("load")(load_cmd.load)
app.command("rest")(rest_cmd.rest)
app.command("faults")(faults_cmd.faults)
app.command("stt")(stt_cmd.stt)


@app.command("engines")
@user_errors
def engines(
    runs: int = typer.Option(3, "--runs", help="Timed runs per engine (after one warm-up)."),
    only: list[str] = typer.Option(None, "--only", help="Probe names to run (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
) -> None:
    """Per engine: load time, first and full latency, real-time factor, peak memory."""
    from avatar.bench.engine_probe import PROBES

    names = only or PROBES
    rows = []
    with Progress(console=err_console) as progress:
        task = progress.add_task("benchmarking engines", total=len(names))
        for name in names:
            progress.update(task, description=f"bench {name}")
            proc = subprocess.run(
                [sys.executable, "-m", "avatar.bench.engine_probe", name, str(runs)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                err_console.print(f"[red]{name} failed:[/] {proc.stderr.strip()[-500:]}")
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            progress.advance(task)
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    table = Table("engine", "load s", "first ms", "full ms", "RTF", "peak RSS MB", "input")
    for r in rows:
        rtf = f"{r['rtf']:.3f}" if r["rtf"] is not None else "-"
        table.add_row(
            r["engine"],
            f"{r['load_s']:.2f}",
            f"{r['first_ms']:.0f}",
            f"{r['full_ms']:.0f}",
            rtf,
            f"{r['peak_rss_mb']:.0f}",
            r["note"],
        )
    console.print(table)


@app.command("tts-zh")
@user_errors
def tts_zh(
    voices: str = typer.Option(
        "espeak-ng,jf_gongitsune,jm_kumo,jf_alpha,jf_nezumi,jf_tebukuro",
        "--voices",
        help="espeak-ng and/or Kokoro voice styles to compare.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of tables."),
) -> None:
    """Mandarin TTS: whisper-base round-trip CER, first-chunk latency, RTF, per voice."""
    from avatar.bench import tts_zh as bench

    names = [v.strip() for v in voices.split(",") if v.strip()]
    whisper, makers = bench.setup(settings(), names)
    results = []
    with Progress(console=err_console) as progress:
        task = progress.add_task("Mandarin TTS", total=len(names) * len(bench.SENTENCES))
        for name in names:
            progress.update(task, description=f"tts-zh {name}")
            done = partial(progress.advance, task)
            results.append(bench.evaluate(name, makers[name], whisper, on_sentence=done))
    if as_json:
        for r in results:
            typer.echo(json.dumps(r.summary() | {"heard": [asdict(h) for h in r.heard]}))
        return
    _print_tts_zh([r.summary() for r in results], bench.machine_load())


def _print_tts_zh(rows: list[dict[str, Any]], load: str) -> None:
    table = Table("voice", "mean CER", "exact", "first chunk p50 ms", "RTF", "CPU RTF", "load s")
    for r in rows:
        exact = f"{r['exact']}/{r['sentences']}"
        table.add_row(
            r["voice"],
            f"{r['mean_cer']:.3f}",
            exact,
            str(r["first_chunk_ms_p50"]),
            f"{r['rtf']:.3f}",
            f"{r['cpu_rtf']:.3f}",
            f"{r['load_s']:.2f}",
        )
    console.print(table)
    console.print(load)


@app.command("latency")
@user_errors
def latency(
    turns: int = typer.Option(20, "--turns", help="Turns per real-model run."),
    modes: str = typer.Option(
        "streaming,sequential",
        "--modes",
        help="Real-model pipelines to run: streaming (the default configuration), sequential"
        " (the original cascade: silence timer, whole transcript, whole reply, whole audio).",
    ),
    fake_sessions: str = typer.Option(
        "1,10,50",
        "--fake-sessions",
        help="Concurrent sessions for the fake-engine runs ('' skips).",
    ),
    fake_turns: int = typer.Option(3, "--fake-turns", help="Turns per fake session."),
    plot_path: Path = typer.Option(
        Path("docs/benchmarks/latency.png"), "--plot", help="Where to save the latency plot (PNG)."
    ),
    json_path: Path = typer.Option(None, "--json", help="Also write the results as JSON."),
    hesitation: int = typer.Option(
        -1,
        "--hesitation",
        help="Questions with a 700 ms pause to stream (-1: all 40 and the Mandarin ones; 0: none).",
    ),
    zh_dir: Path = typer.Option(
        Path("../shared/audio/zh"), "--zh-dir", help="Mandarin recordings for the hesitation run."
    ),
) -> None:
    """Voice-to-voice p50/p95 with its parts, through the real WebSocket in real time; then the
    hesitation run: how many questions with a mid-sentence pause stayed one turn."""
    import asyncio
    import tempfile

    from avatar.bench import latency as lat
    from avatar.engines.hub import EngineHub
    from avatar.settings import load_settings
    from avatar.testing.fakes import ScriptedChat, ScriptedStt, ToneTts

    base = settings()
    work = Path(tempfile.mkdtemp(prefix="avatar-bench-"))
    runs: dict[str, list[lat.TurnResult]] = {}
    summaries: dict[str, dict[str, dict[str, float]]] = {}
    hub = EngineHub(base)
    clips = asyncio.run(lat.make_clips(hub))

    def run(name: str, s: object, engines: EngineHub, sessions: int, n: int) -> None:
        with Progress(console=err_console) as progress, lat.served(s, engines) as url:  # type: ignore[arg-type]
            task = progress.add_task(f"{name}", total=sessions * n)
            results = asyncio.run(
                lat.run_sessions(
                    url,
                    s.api_token.get_secret_value(),
                    clips,  # type: ignore[attr-defined]
                    n,
                    sessions,
                    lambda _: progress.advance(task),
                )
            )
        runs[name] = results
        summaries[name] = lat.summarize(results)

    token = "bench-token-0123456789abcdef"
    for mode in [m for m in modes.split(",") if m]:
        s = load_settings(
            data_dir=work / mode,
            api_token=token,
            pipeline=mode,
            server={"preload": True},
            models={"cache_dir": base.model_cache_dir},
            **({"turn": lat.CASCADE_TURN} if mode == "sequential" else {}),
        )
        hub.settings = s
        run(mode, s, hub, 1, turns)
    for count in [int(c) for c in fake_sessions.split(",") if c]:
        s = load_settings(
            data_dir=work / f"fake{count}",
            api_token=token,
            max_sessions=count + 1,
            max_sessions_per_client=count + 1,
            server={"preload": False},
            models={"cache_dir": base.model_cache_dir},
        )
        fake = EngineHub(s, hub.models)
        fake.override("stt", ScriptedStt("What is the capital of France?"))
        fake.override("llm", ScriptedChat("The capital of France is Paris.", interval_s=0.0))
        fake.override("tts.fast", ToneTts(ms_per_word=100))
        run(f"fake x{count}", s, fake, count, fake_turns)
    if hesitation and "streaming" in runs:
        s = load_settings(
            data_dir=work / "hesitation",
            api_token=token,
            server={"preload": True},
            models={"cache_dir": base.model_cache_dir},
        )
        hub.settings = s
        summaries["hesitation"] = _hesitation_run(s, hub, hesitation, zh_dir)
    _print_latency(summaries)
    if plot_path:
        lat.plot({k: v for k, v in runs.items() if not k.startswith("fake")} or runs, plot_path)
        err_console.print(f"plot: {plot_path}")
    if json_path:
        turns = {name: [r.record() for r in results] for name, results in runs.items()}
        json_path.write_text(json.dumps({**summaries, "turns": turns}, indent=2))


def _hesitation_run(s: Any, hub: Any, count: int, zh_dir: Path) -> dict[str, Any]:
    import asyncio

    from avatar.bench import hesitation as hes
    from avatar.bench import hesitation_run as run
    from avatar.bench import latency as lat

    clips = asyncio.run(
        hes.make_paused_clips(hub, hes.whisper_for_words(hub), zh_dir if zh_dir.is_dir() else None)
    )
    clips = clips if count < 0 else clips[:count]
    with Progress(console=err_console) as progress, lat.served(s, hub) as url:
        task = progress.add_task("hesitation (700 ms pause)", total=len(clips))
        results = asyncio.run(
            run.run_hesitation(
                url, s.api_token.get_secret_value(), clips, lambda _: progress.advance(task)
            )
        )
    summary = run.summarize_hesitation(results)
    summary["split"] = [f"{r.voice}: {r.text}" for r in results if not r.one_turn]  # type: ignore[assignment]
    return summary


def _print_latency(summaries: dict[str, dict[str, dict[str, float]]]) -> None:
    table = Table("run", "measure", "p50 ms", "p95 ms", "mean ms", "n")
    for run_name, summary in summaries.items():
        if run_name == "hesitation":
            continue
        for measure, stats in summary.items():
            if "p50" not in stats:  # counts (speculation), printed below
                continue
            table.add_row(
                run_name,
                measure,
                f"{stats['p50']:.0f}",
                f"{stats['p95']:.0f}",
                f"{stats['mean']:.0f}",
                str(int(stats["n"])),
            )
        table.add_section()
    console.print(table)
    if "hesitation" in summaries:
        h = summaries["hesitation"]
        console.print(
            f"hesitation: {h['one_turn']:g} of {h['clips']:g} questions with a 700 ms pause stayed"
            f" one turn ({h['one_turn_pct']:g} %); split: {', '.join(h['split']) or 'none'}"  # type: ignore[arg-type]
        )
        console.print(
            f"hesitation speculation: wasted {h.get('speculations_wasted', 0):g},"
            f" wall {h.get('speculation_wasted_ms', 0):g} ms,"
            f" CPU {h.get('speculation_wasted_cpu_ms', 0):g} ms"
        )
    for run_name, summary in summaries.items():
        counts = summary.get("speculation", {}) if run_name != "hesitation" else {}
        if counts:
            listed = ", ".join(f"{k} {v:g}" for k, v in counts.items())
            console.print(f"{run_name} speculation: {listed}")
    if "streaming" in summaries and "sequential" in summaries:
        ratio = (
            summaries["sequential"]["voice_to_voice_client_ms"]["p50"]
            / summaries["streaming"]["voice_to_voice_client_ms"]["p50"]
        )
        console.print(f"sequential / streaming voice-to-voice p50: {ratio:.2f}x")
