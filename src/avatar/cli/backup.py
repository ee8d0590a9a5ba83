"""`avatar backup DIR` and `avatar restore DIR [--force]`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from avatar.cli.console import byte_progress, console, err_console, run_async, settings, user_errors

Progress = Callable[[str, int, int], None]
_STAGES = {"database": "database", "audio": "audio files", "verify": "verify", "restore": "copy"}


@user_errors
def backup(
    dest: Path = typer.Argument(..., help="A new or empty folder to write the backup to."),
) -> None:
    """Back up the database and audio files while the server keeps running."""
    from avatar.services import backup as service

    with byte_progress() as update:
        report = run_async(service.backup(settings(), dest, _labelled(update)))
    counts = report.counts
    console.print(
        f"[green]backed up[/] {counts.sessions} sessions, {counts.turns} turns, "
        f"{counts.voice_profiles} voice profiles ({report.files} files, "
        f"{report.bytes / 2**20:.1f} MiB, {report.dialect}) to {report.path}"
    )
    if report.missing_audio:
        err_console.print(
            f"[yellow]note:[/] {len(report.missing_audio)} audio files were deleted while the "
            "backup ran (their turns or profiles were deleted too, or are about to be)"
        )


@user_errors
def restore(
    src: Path = typer.Argument(..., help="A folder written by `avatar backup`."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Replace existing data. SQLite: the old database and audio are moved to "
        "<data_dir>/pre-restore-<time>/; Postgres: its tables are replaced.",
    ),
) -> None:
    """Restore a backup into the configured data folder and database (stop the server first)."""
    from avatar.services import backup as service

    with byte_progress() as update:
        report = run_async(
            service.restore(settings(), src, force=force, progress=_labelled(update))
        )
    counts = report.counts
    console.print(
        f"[green]restored[/] {counts.sessions} sessions, {counts.turns} turns, "
        f"{counts.voice_profiles} voice profiles into {report.data_dir} "
        f"(schema {report.revision})"
    )
    if report.moved_aside is not None:
        console.print(f"the previous data is in {report.moved_aside}")


def _labelled(update: Progress) -> Progress:
    """Progress bars named for people ("audio files", not "audio")."""

    def report(stage: str, done: int, total: int) -> None:
        update(_STAGES.get(stage, stage), done, total)

    return report
