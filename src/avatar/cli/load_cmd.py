"""`avatar bench load`: hold N voice sessions plus REST traffic for M minutes, then report.

Registered by cli/bench.py as ``app.command("load")(load_cmd.load)``.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from avatar.cli.console import console, err_console, settings, user_errors

if TYPE_CHECKING:
    from avatar.bench.load import LoadResult, LoadRun, Target


@user_errors
def load(
    sessions: int = typer.Option(4, "--sessions", min=1, help="Concurrent voice sessions."),
    minutes: float = typer.Option(5.0, "--minutes", min=0.1, help="How long to hold the load."),
    fake_engines: bool = typer.Option(
        False,
        "--fake-engines",
        help="Scripted STT/LLM/TTS on the server (real VAD): measures "
        "the server itself rather than the models.",
    ),
    rest_rps: float = typer.Option(2.0, "--rest-rps", min=0.0, help="REST requests a second."),
    url: str = typer.Option(None, "--url", help="Load a running server instead of starting one."),
    token: str = typer.Option(None, "--token", help="Its API token (with --url)."),
    pid: int = typer.Option(None, "--pid", help="Its process id, for RSS (with --url)."),
    plot_path: Path = typer.Option(
        Path("docs/benchmarks/load.png"), "--plot", help="Where to save the plot (PNG)."
    ),
    json_path: Path = typer.Option(None, "--json", help="Also write the figures as JSON."),
) -> None:
    """Sessions held, voice-to-voice and REST p50/p99, error rate, server memory over time."""
    from avatar.audio.encode import encode_wav
    from avatar.audio.pcm import PcmAudio
    from avatar.bench import latency as lat
    from avatar.bench.load import Target, spawned_server, summarize
    from avatar.engines.hub import EngineHub

    base = settings()
    err_console.print("synthesising the questions…")
    clips = asyncio.run(lat.make_clips(EngineHub(base)))
    wav = encode_wav(PcmAudio.from_s16le(clips[0].pcm, 16_000))
    duration = minutes * 60
    if url:
        if not token:
            raise typer.BadParameter("--url needs --token")
        result = run_with_progress(
            Target(url.rstrip("/"), token, pid), clips, wav, sessions, rest_rps, duration
        )
    else:
        work = Path(tempfile.mkdtemp(prefix="avatar-load-"))
        err_console.print(f"starting a server ({'scripted' if fake_engines else 'real'} engines)…")
        with spawned_server(
            work, sessions, fake_engines=fake_engines, model_cache=base.model_cache_dir
        ) as target:
            result = run_with_progress(target, clips, wav, sessions, rest_rps, duration)
    summary = summarize(result, warmup_s=min(30.0, duration / 4))
    print_summary(summary)
    if plot_path:
        plot(result, plot_path)
        err_console.print(f"plot: {plot_path}")
    if json_path:
        json_path.write_text(json.dumps(summary, indent=2))


def run_with_progress(
    target: Target, clips: list[Any], wav: bytes, sessions: int, rest_rps: float, duration: float
) -> LoadResult:
    from avatar.bench.load import LoadRun

    run = LoadRun(target, clips, wav, sessions, rest_rps)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console) as progress:
        task = progress.add_task("load", total=duration)

        def tick(r: LoadRun) -> None:
            samples = r.result.samples
            turns = sum(s.kind == "turn" and s.ok for s in samples)
            errors = sum(not s.ok for s in samples)
            rss = f" · server {r.result.rss[-1][1]:.0f} MB" if r.result.rss else ""
            progress.update(
                task,
                completed=r.now(),
                description=f"sessions {r.open}/{r.sessions} · turns {turns} · "
                f"requests {len(samples) - turns} · errors {errors}{rss}",
            )

        asyncio.run(run.run(duration, tick))
        progress.update(task, completed=duration)
    return run.result


def print_summary(summary: dict[str, Any]) -> None:
    table = Table("measure", "value")
    held = summary["sessions_held"]
    table.add_row(
        "sessions held (min-max)", f"{held['min']}-{held['max']} of {summary['sessions']}"
    )
    table.add_row("sessions refused", str(summary["sessions_refused"]))
    for name, stats in [
        ("voice-to-voice", summary["voice_to_voice_ms"]),
        ("  endpointing silence (server VAD)", summary["endpointing_ms"]),
        ("  v2v minus endpointing (server-added*)", summary["server_added_ms"]),
        ("  endpoint → first audio, server clock", summary["after_endpoint_server_clock_ms"]),
        ("REST (all)", summary["rest_ms"]),
        *summary["rest_routes_ms"].items(),
    ]:
        if stats["n"]:
            table.add_row(
                f"{name} p50 / p95 / p99 ms",
                f"{stats['p50']:.0f} / {stats['p95']:.0f} / {stats['p99']:.0f} (n={stats['n']})",
            )
    table.add_row(
        "errors", f"{summary['errors']} of {summary['requests']} ({summary['error_rate']:.2%})"
    )
    table.add_row("rate limited (429)", str(summary["rate_limited"]))
    rss = summary["server_rss_mb"]
    if rss["start"] is not None:
        table.add_row(
            "server RSS start / peak / end MB", f"{rss['start']} / {rss['peak']} / {rss['end']}"
        )
        table.add_row("server RSS growth MB/min", str(rss["growth_mb_per_min"]))
    console.print(table)
    err_console.print(
        "* server-added: with --fake-engines (zero-time engines) all of it is the server's;"
        " with real engines it includes STT, LLM and TTS."
    )
    for line in summary["first_errors"]:
        err_console.print(f"[red]error[/] {line}", markup=False)


def plot(result: LoadResult, path: Path) -> None:
    """Server RSS and sessions held over time, and every latency over time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    if result.rss:
        top.plot(*zip(*result.rss, strict=True), color="tab:blue", label="server RSS (MB)")
    top.set_ylabel("server RSS (MB)")
    held = top.twinx()
    if result.held:
        held.step(*zip(*result.held, strict=True), where="post", color="tab:green", alpha=0.6)
    held.set_ylabel("sessions held", color="tab:green")
    held.set_ylim(0, result.sessions + 1)
    for kind, colour in (("turn", "tab:red"), ("rest", "tab:gray")):
        points = [
            (s.t, s.ms) for s in result.samples if s.ok and (s.kind == "turn") == (kind == "turn")
        ]
        if points:
            label = "voice-to-voice" if kind == "turn" else "REST"
            bottom.scatter(*zip(*points, strict=True), s=8, alpha=0.5, color=colour, label=label)
    bottom.set_yscale("log")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("time (s)")
    bottom.legend(loc="upper right")
    plural = "s" if result.sessions != 1 else ""
    top.set_title(
        f"AVATAR under load: {result.sessions} session{plural}, {result.duration_s / 60:g} min"
    )
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
