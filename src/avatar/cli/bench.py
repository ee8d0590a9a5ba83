"""`avatar bench …`: measurements on this machine, as tables (figures go in BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import typer
from rich.progress import Progress
from rich.table import Table

from avatar.bench.engine_probe import PROBES
from avatar.cli.console import console, err_console, user_errors

app = typer.Typer(help="Benchmarks.", no_args_is_help=True)


@app.command("engines")
@user_errors
def engines(
    runs: int = typer.Option(3, "--runs", help="Timed runs per engine (after one warm-up)."),
    only: list[str] = typer.Option(None, "--only", help="Probe names to run (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
) -> None:
    """Per engine: load time, first and full latency, real-time factor, peak memory."""
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
