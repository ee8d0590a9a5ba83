"""`avatar serve`: preload the configured models with a progress display, then serve HTTP."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from avatar.cli.console import err_console, settings, user_errors
from avatar.errors import AvatarError

if TYPE_CHECKING:
    from avatar.engines.hub import EngineHub, SlotState


def preload_with_progress(hub: EngineHub) -> None:
    """Load every configured engine, one progress line each; failures are shown, not fatal."""
    slots = hub.configured_slots()
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console
    ) as progress:
        task = progress.add_task("loading models", total=len(slots))

        def step(slot: str, result: SlotState | AvatarError) -> None:
            if isinstance(result, AvatarError):
                progress.console.print(f"[red]✗[/] {slot}: {result}")
            else:
                progress.console.print(
                    f"[green]✓[/] {slot}: {result.engine} {result.model or ''} "
                    f"in {result.load_s:.1f}s (+{result.memory_mb:.0f} MB)"
                )
            progress.advance(task)

        hub.preload(slots, step)


@user_errors
def serve(
    host: str = typer.Option(None, "--host", help="Bind address (default 127.0.0.1)."),
    port: int = typer.Option(None, "--port", help="TCP port (default 8000)."),
    preload: bool = typer.Option(True, "--preload/--no-preload", help="Load models first."),
) -> None:
    """Start the AVATAR server with the configured engines."""
    from avatar.api.app import create_app
    from avatar.api.server import AvatarServer, raise_open_files_limit, uvicorn_config
    from avatar.engines.hub import EngineHub

    s = settings()
    s.server.host = host or s.server.host
    s.server.port = port or s.server.port
    s.server.preload = preload
    logging.basicConfig(level=s.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    raise_open_files_limit()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    hub = EngineHub(s)
    if preload:
        preload_with_progress(hub)
    app = create_app(s, hub)
    err_console.print(f"AVATAR listening on http://{s.server.host}:{s.server.port}")
    config = uvicorn_config(app, s)
    AvatarServer(config, app).run()
