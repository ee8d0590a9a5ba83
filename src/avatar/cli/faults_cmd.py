"""`avatar bench faults`: other sessions' latency while one session's LLM backend fails.

Registered by cli/bench.py as ``app.command("faults")(faults_cmd.faults)``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from avatar.cli.console import console, err_console, settings, user_errors


@user_errors
def faults(
    bystanders: int = typer.Option(4, "--bystanders", min=1, help="Healthy sessions measured."),
    window_s: float = typer.Option(
        15.0, "--window", min=1.0, help="Seconds each fault (and the baseline) is measured."
    ),
    modes: str = typer.Option(
        None, "--modes", help="Fault modes, comma-separated (default: the eight of issue #6)."
    ),
    plot_path: Path = typer.Option(
        Path("docs/benchmarks/faults.png"), "--plot", help="Where to save the plot (PNG)."
    ),
    json_path: Path = typer.Option(
        Path("docs/benchmarks/faults.json"), "--json", help="Where to write the figures (JSON)."
    ),
) -> None:
    """Bystander p50/p95 (question to first audio) per LLM fault, against a baseline."""
    from avatar.bench import faults as bench
    from avatar.testing.fake_openai import FakeMode

    chosen = [FakeMode(m.strip()) for m in modes.split(",")] if modes else bench.FAULT_MODES
    windows = len(chosen) + 2
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, TimeRemainingColumn(), console=err_console) as progress:
        task = progress.add_task("starting", total=windows * window_s)
        started: list[float] = []

        def on_window(name: str, seconds: float) -> None:
            started.append(time.monotonic())
            progress.update(
                task,
                completed=(len(started) - 1) * seconds,
                description=f"window {len(started)}/{windows}: fault {name}",
            )

        result = bench.measure_fault_isolation(
            settings(),
            Path(tempfile.mkdtemp(prefix="avatar-faults-")),
            modes=chosen,
            bystanders=bystanders,
            window_s=window_s,
            on_window=on_window,
        )
        progress.update(task, completed=windows * window_s, description="done")
    rows = bench.summarize(result)
    print_rows(rows)
    meta = {"bystanders": bystanders, "window_s": window_s, "faulty_pause_s": bench.FAULTY_PAUSE_S}
    if json_path:
        bench.write_json(rows, meta, json_path)
        err_console.print(f"json: {json_path}")
    if plot_path:
        bench.plot(result, rows, plot_path)
        err_console.print(f"plot: {plot_path}")


def print_rows(rows: list[dict[str, object]]) -> None:
    table = Table(
        "fault", "bystander turns", "p50 ms", "p95 ms", "p50 Δ", "p95 Δ", "faulty turns: errors"
    )
    for r in rows:
        errors = ", ".join(f"{k} {v}" for k, v in r["faulty_errors"].items())  # type: ignore[attr-defined]
        table.add_row(
            str(r["fault"]),
            f"{r['bystander_turns']} ({r['bystander_errors']} failed)",
            f"{r['bystander_p50_ms']:.0f}",
            f"{r['bystander_p95_ms']:.0f}",
            _pct(r["p50_change_pct"]),
            _pct(r["p95_change_pct"]),
            f"{r['faulty_turns']}: {errors or '-'}" if r["faulty_turns"] else "-",
        )
    console.print(table)


def _pct(value: object) -> str:
    return "-" if value is None else f"{value:+.1f} %"
