"""`avatar config show`: the effective settings, secrets redacted."""

from __future__ import annotations

import json

import typer

from avatar.cli.console import console, settings, user_errors
from avatar.redaction import strip_all

app = typer.Typer(help="Show the effective settings.", no_args_is_help=True)


@app.command("show")
@user_errors
def show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print every setting (from defaults, .env and AVATAR_* variables), secrets redacted."""
    data = strip_all(settings().redacted())  # and passwords inside database/redis URLs
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        console.print_json(json.dumps(data, default=str))
