"""`avatar models list|verify`: the model catalog and an integrity check with progress bars."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from avatar.cli.console import byte_progress, console, settings, user_errors
from avatar.errors import AvatarError
from avatar.models.catalog import CATALOG
from avatar.models.store import ModelStore

app = typer.Typer(help="List and verify models.", no_args_is_help=True)


def _store() -> ModelStore:
    s = settings()
    return ModelStore(s.model_cache_dir, allow_downloads=s.models.allow_downloads)


@app.command("list")
@user_errors
def list_models() -> None:
    """List catalog models: kind, size, licence, languages, source."""
    table = Table("name", "kind", "size", "licence", "languages", "source")
    for spec in CATALOG.values():
        source = "\n".join(p.replace("_", "-") for p in spec.packages) or (spec.hub_id or "-")
        table.add_row(
            spec.name,
            spec.kind,
            f"{spec.size / 1e6:.0f} MB",
            spec.license,
            ",".join(spec.languages),
            source,
        )
    console.print(table)


@app.command("verify")
@user_errors
def verify(
    names: list[str] = typer.Argument(None, help="Models to verify (default: all)."),
    recheck: bool = typer.Option(False, "--recheck", help="Re-hash files verified earlier."),
) -> None:
    """Join packaged parts if needed and check every file's size and sha256."""
    store = _store()
    failures = 0
    with byte_progress() as progress:
        for name in names or list(CATALOG):
            try:
                model = store.ensure(name, progress, recheck=recheck)
                console.print(f"[green]ok[/] {name}: {model.path}")
            except AvatarError as exc:
                failures += 1
                console.print(f"[red]failed[/] {name}: {escape(exc.message)}")
                if exc.hint:
                    console.print(f"  [yellow]fix:[/] {escape(exc.hint)}")
    if failures:
        raise typer.Exit(1)
