"""`avatar bench rest`: conversation REST latency over a large seeded history.

Registered by cli/bench.py as ``app.command("rest")(rest_cmd.rest)``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from avatar.cli.console import console, err_console, user_errors


@user_errors
def rest(
    conversations: int = typer.Option(
        10_000, "--conversations", min=1, help="Conversations to store."
    ),
    requests: int = typer.Option(200, "--requests", min=1, help="Timed requests per route."),
    budget_s: float = typer.Option(
        60.0, "--budget", min=1.0, help="At most this many seconds of requests per route."
    ),
    database_url: str = typer.Option(
        None,
        "--database-url",
        help="An EMPTY Postgres database to seed (postgresql+asyncpg://…); default: SQLite in a "
        "temporary folder.",
    ),
    plot_path: Path = typer.Option(
        Path("docs/benchmarks/rest.png"), "--plot", help="Where to save the plot (PNG)."
    ),
    json_path: Path = typer.Option(None, "--json", help="Also write the figures as JSON."),
    keep: bool = typer.Option(False, "--keep", help="Keep the temporary data folder."),
) -> None:
    """p50/p95/p99 of list, search, one conversation, stats and export over N conversations."""
    from avatar.bench import rest as bench
    from avatar.bench.load import spawned_server

    work = Path(tempfile.mkdtemp(prefix="avatar-rest-"))
    url = database_url or f"sqlite+aiosqlite:///{work / 'avatar.db'}"
    backend = "postgres" if database_url else "sqlite"
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    try:
        with Progress(*columns, TimeElapsedColumn(), console=err_console) as progress:
            task = progress.add_task(f"seeding {backend}", total=conversations)
            start = time.monotonic()
            ids, turns = asyncio.run(
                bench.seed(url, conversations, on_batch=lambda n: progress.advance(task, n))
            )
            seed_s = time.monotonic() - start
        err_console.print(f"stored {len(ids)} conversations, {turns} turns in {seed_s:.0f} s")
        env = {"AVATAR_DATABASE_URL": database_url} if database_url else None
        with spawned_server(work, 1, fake_engines=True, env=env) as target:
            labels = [r.label for r in bench.routes(conversations)]
            with Progress(*columns, TimeElapsedColumn(), console=err_console) as progress:
                tasks = {label: progress.add_task(label, total=requests) for label in labels}
                results = bench.measure(
                    target.url,
                    target.token,
                    ids,
                    conversations,
                    requests=requests,
                    budget_s=budget_s,
                    on_request=lambda label: progress.advance(tasks[label]),
                )
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            err_console.print(f"data kept in {work}")
    summary: dict[str, Any] = {
        "backend": backend,
        "conversations": len(ids),
        "turns": turns,
        "seed_s": round(seed_s, 1),
        "routes": bench.summarize(results),
        "first_errors": [e for r in results for e in r.errors][:5],
    }
    table = Table("route", "n", "p50 ms", "p95 ms", "p99 ms", "errors")
    for label, stats in summary["routes"].items():
        if stats["n"]:
            table.add_row(
                label,
                str(stats["n"]),
                f"{stats['p50']:.1f}",
                f"{stats['p95']:.1f}",
                f"{stats['p99']:.1f}",
                str(stats["errors"]),
            )
        else:
            table.add_row(label, "0", "-", "-", "-", str(stats["errors"]))
    console.print(table)
    for line in summary["first_errors"]:
        err_console.print(f"[red]error[/] {line}", markup=False)
    if plot_path:
        title = f"AVATAR REST over {len(ids):,} conversations ({turns:,} turns, {backend})"
        bench.plot(results, plot_path, title)
        err_console.print(f"plot: {plot_path}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(summary, indent=2))
