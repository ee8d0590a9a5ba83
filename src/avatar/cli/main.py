"""The `avatar` command line."""

from __future__ import annotations

import secrets

from avatar.system.openmp import configure_openmp

configure_openmp()  # before any engine library loads (see avatar.system.openmp)

import typer  # noqa: E402

from avatar import __version__  # noqa: E402
from avatar.cli import backup as backup_cmd  # noqa: E402
from avatar.cli import bench, config_cmd, doctor, models_cmd, oneshot, serve  # noqa: E402
from avatar.cli import check as check_cmd  # noqa: E402

app = typer.Typer(
    help="AVATAR: a private, self-hosted, real-time voice assistant.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(models_cmd.app, name="models")
app.add_typer(bench.app, name="bench")
app.command("serve")(serve.serve)
app.command("doctor")(doctor.doctor)
app.command("transcribe")(oneshot.transcribe)
app.command("say")(oneshot.say)
app.command("ask")(oneshot.ask)
app.command("talk")(oneshot.talk)
app.command("check")(check_cmd.check)
app.command("backup")(backup_cmd.backup)
app.command("restore")(backup_cmd.restore)


@app.command("version")
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command("token")
def token() -> None:
    """Print a new random API token (for AVATAR_API_TOKEN)."""
    typer.echo(secrets.token_urlsafe(32))


if __name__ == "__main__":
    app()
