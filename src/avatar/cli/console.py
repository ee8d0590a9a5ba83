"""Shared CLI plumbing: one rich console, user errors without tracebacks, progress bars."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from avatar.errors import AvatarError

if TYPE_CHECKING:
    from avatar.settings import Settings


console = Console()
err_console = Console(stderr=True, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Print an AvatarError as one readable message and exit 1, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AvatarError as exc:
            err_console.print(f"[bold red]error[/] [dim]({exc.code})[/]: {escape(exc.message)}")
            if exc.hint:
                err_console.print(f"  [yellow]fix:[/] {escape(exc.hint)}")
            raise typer.Exit(1) from None

    return wrapper


def settings() -> Settings:
    from avatar.settings import load_settings

    return load_settings()


@contextmanager
def byte_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A ``ModelStore`` progress callback drawing one bar per description (join, verify)."""
    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as progress:

        def update(description: str, done: int, total: int) -> None:
            if description not in tasks:
                tasks[description] = progress.add_task(description, total=total)
            progress.update(tasks[description], completed=done)

        yield update


def run_async(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)
