"""`avatar check [--repair]`: the database's integrity, rows against audio files, orphan files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from avatar.cli.console import console, err_console, run_async, settings, user_errors
from avatar.errors import ConfigError

# avatar.services.integrity.DEFAULT_GRACE_S, repeated so that `--help` imports no storage code
GRACE_S = 3600.0

if TYPE_CHECKING:
    from avatar.services.integrity import IntegrityReport, RepairReport
    from avatar.settings import Settings


SHOWN = 10  # findings listed per row; the rest are counted


@user_errors
def check(
    fix: bool = typer.Option(
        False, "--repair", help="Remove orphan files and stale temp files (never a row)."
    ),
    grace: float = typer.Option(
        GRACE_S,
        "--grace",
        min=0,
        help="Leave files younger than this many seconds alone (a write may be in progress);"
        " 0 is safe while the server is stopped.",
    ),
) -> None:
    """Check the database and audio files (integrity, missing, torn, orphan); exit 1 on problems.

    Safe while the server runs; --repair removes only files that no row names.
    """
    from avatar.services.integrity import RepairReport

    s = settings()
    result = run_async(_run(s, fix, grace))
    report = result.after if isinstance(result, RepairReport) else result
    console.print(_table(s, result))
    if isinstance(result, RepairReport) and result.skipped:
        err_console.print("[yellow]left alone:[/] " + escape(", ".join(result.skipped[:SHOWN])))
    if not report.clean:
        leftovers = report.orphans or report.stale_temps
        hint = " (orphan and temp files: run with --repair)" if leftovers and not fix else ""
        err_console.print(f"[red]problems found[/]{hint}")
        raise typer.Exit(1)
    console.print("[green]all consistent[/]")


async def _run(s: Settings, fix: bool, grace: float) -> IntegrityReport | RepairReport:
    from avatar.services.integrity import check_integrity, repair
    from avatar.storage import AudioStore, Database

    _require_data(s)
    db = Database(s.resolved_database_url)
    try:
        audio = AudioStore(s.data_dir / "audio")
        if fix:
            return await repair(db, audio, grace_s=grace)
        return await check_integrity(db, audio, grace_s=grace)
    finally:
        await db.dispose()


def _require_data(s: Settings) -> None:
    """Refuse to check (and so create) a data folder or SQLite file that does not exist."""
    sqlite_file = None if s.database_url else s.data_dir / "avatar.db"
    for path in (s.data_dir, sqlite_file):
        if path is not None and not Path(path).exists():
            raise ConfigError(
                f"nothing to check: {path} does not exist",
                hint="point AVATAR_DATA_DIR (or AVATAR_DATABASE_URL) at the server's data",
            )


def _table(s: Settings, result: IntegrityReport | RepairReport) -> Table:
    from avatar.services.integrity import RepairReport

    report = result.after if isinstance(result, RepairReport) else result
    found = result.before if isinstance(result, RepairReport) else result
    counts = report.counts
    table = Table(title=f"AVATAR data check ({escape(str(s.data_dir))}, {report.dialect})")
    table.add_column("check")
    table.add_column("result")
    table.add_column("details", overflow="fold")
    db_detail = (
        f"{counts.get('sessions', 0)} sessions, {counts.get('turns', 0)} turns, "
        f"{counts.get('voice_profiles', 0)} voice profiles"
    )
    _row(table, "database", list(report.database_problems), db_detail)
    referenced = f"{counts.get('files', 0)} audio files stored"
    _row(table, "files named by rows", [str(r) for r in report.missing_files], referenced)
    _row(table, "unsafe paths in rows", [str(r) for r in report.unsafe_paths], "")
    _row(table, "torn WAV files", [str(r) for r in report.torn_files], "")
    if isinstance(result, RepairReport):
        removed = len(result.removed)
        _row(table, "orphan files", list(report.orphans), f"{len(found.orphans)} found")
        _row(table, "stale temp files", list(report.stale_temps), f"{len(found.stale_temps)} found")
        table.add_row("repair", "[green]done[/]", f"{removed} files removed")
    else:
        _row(table, "orphan files", list(report.orphans), "", warn=True)
        _row(table, "stale temp files", list(report.stale_temps), "", warn=True)
    return table


def _row(table: Table, name: str, findings: list[str], ok_detail: str, warn: bool = False) -> None:
    if not findings:
        table.add_row(name, "[green]ok[/]", escape(ok_detail))
        return
    shown = "\n".join(escape(f) for f in findings[:SHOWN])
    more = f"\n… and {len(findings) - SHOWN} more" if len(findings) > SHOWN else ""
    label = "[yellow]found[/]" if warn else "[red]FAIL[/]"
    table.add_row(name, f"{label} ({len(findings)})", shown + more)
