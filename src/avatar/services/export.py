"""Export one conversation as JSON (full data), Markdown (a readable transcript) or a zip of both
plus every turn's audio.

The zip is written to a temp file in the audio store's ``exports`` folder (named like the store's
own temp files, so :meth:`AudioStore.orphans` sweeps one a crash left behind) and streamed from
there; the caller deletes it once sent. Only files the store resolves inside its root are added,
under server-made names (``turn-003-user.wav``).
"""

from __future__ import annotations

import asyncio
import copy
import html
import json
import shutil
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from avatar import __version__
from avatar.services.conversations import (
    Side,
    StoredSession,
    locate,
    safe_stem,
    side_audio,
    turn_file_name,
)
from avatar.storage import AudioStore, TurnRow
from avatar.storage.audio_store import TEMP_PREFIX, TEMP_SUFFIX

FORMAT_VERSION = 1
ExportFormat = Literal["json", "markdown", "zip"]
SIDES: tuple[Side, ...] = ("user", "assistant")


@dataclass(frozen=True, slots=True)
class ExportFile:
    """An export ready to send: bytes in memory, or a temp file the caller must delete."""

    media_type: str
    filename: str
    content: bytes | None = None
    path: Path | None = None


def document(public: dict[str, Any], files: dict[tuple[int, Side], str] | None = None) -> Any:
    """The JSON export: the session as the API shows it (``public``, JSON-ready); with ``files``,
    each turn names its audio in the zip."""
    data = copy.deepcopy(public)
    if files is not None:
        for turn in data["turns"]:
            for side in SIDES:
                turn[f"{side}_audio_file"] = files.get((turn["index"], side))
    return {
        "format": "avatar.conversation",
        "format_version": FORMAT_VERSION,
        "avatar_version": __version__,
        "exported_at": _iso(datetime.now(UTC)),
        "session": data,
    }


def to_json(public: dict[str, Any], files: dict[tuple[int, Side], str] | None = None) -> bytes:
    return json.dumps(document(public, files), ensure_ascii=False, indent=2).encode()


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _inert(text: str) -> str:
    """Text that renders as itself: ``<``, ``>``, ``&`` escaped so no renderer runs raw HTML,
    and backslashes and brackets escaped so nothing becomes a link (``[x](javascript:…)``,
    reference definitions, images)."""
    text = html.escape(text, quote=False).replace("\\", "\\\\")
    return text.replace("[", "\\[").replace("]", "\\]")


def _quote(text: str) -> str:
    """Text as a Markdown blockquote, made inert (:func:`_inert`)."""
    lines = _inert(text).splitlines() or [""]
    return "\n".join(f"> {line}" if line else ">" for line in lines)


def _latencies(metrics: dict[str, Any]) -> str:
    parts = [
        f"{key.removesuffix('_ms').replace('_', ' ')} {value:g} ms"
        for key, value in metrics.items()
        if key.endswith("_ms") and isinstance(value, int | float) and not isinstance(value, bool)
    ]
    return " · ".join(parts)


def _heard_label(turn: TurnRow) -> str:
    """ "Interrupted by the user after 1.2 s of 4.0 s; they heard:" (times when known)."""
    if turn.heard_ms is None:
        return "Interrupted by the user; they heard:"
    whole = f" of {turn.assistant_audio_s:.1f} s" if turn.assistant_audio_s is not None else ""
    return f"Interrupted by the user after {turn.heard_ms / 1000:.1f} s{whole}; they heard:"


def to_markdown(stored: StoredSession) -> str:
    """A transcript for people: a header, then each turn's user and assistant text."""
    detail = stored.session
    title = _inert(detail.title or f"Conversation {detail.id}")
    out = [
        f"# {title}",
        "",
        f"- Session: `{detail.id}`",
        f"- Started: {_iso(detail.created_at)}",
        f"- Last activity: {_iso(detail.updated_at)}",
        f"- Language: {detail.language or 'auto'}",
        f"- Turns: {len(stored.turns)}",
        "",
    ]
    for turn in stored.turns:
        out += [
            f"## Turn {turn.index} ({_iso(turn.created_at)})",
            "",
            "**User:**",
            "",
            _quote(turn.user_text),
            "",
            "**Assistant:**",
            "",
            _quote(turn.assistant_text),
            "",
        ]
        if turn.interrupted:
            out += [f"*{_heard_label(turn)}*", "", _quote(turn.heard_text or ""), ""]
        if latencies := _latencies(turn.metrics):
            out += [f"*Latency: {latencies}*", ""]
    return "\n".join(out)


def _add_audio(
    archive: zipfile.ZipFile, audio: AudioStore, turns: list[TurnRow]
) -> dict[tuple[int, Side], str]:
    files: dict[tuple[int, Side], str] = {}
    for turn in turns:
        for side in SIDES:
            rel = side_audio(turn, side)
            path = locate(audio, rel) if rel else None
            if rel is None or path is None:
                continue
            name = turn_file_name(turn.index, side, rel)
            try:
                source = path.open("rb")
            except OSError:  # deleted since it was located
                continue
            info = zipfile.ZipInfo(name, date_time=turn.created_at.timetuple()[:6])
            with source, archive.open(info, "w") as target:
                shutil.copyfileobj(source, target, 1 << 20)
            files[(turn.index, side)] = name
    return files


def write_zip(audio: AudioStore, stored: StoredSession, public: dict[str, Any]) -> Path:
    """Build the archive in a temp file under ``exports/`` and return its path (blocking)."""
    target = audio.path(f"exports/{TEMP_PREFIX}{uuid.uuid4().hex}{TEMP_SUFFIX}")
    try:
        with target.open("xb") as fh, zipfile.ZipFile(fh, "w") as archive:
            files = _add_audio(archive, audio, stored.turns)
            deflate = zipfile.ZIP_DEFLATED
            archive.writestr("conversation.json", to_json(public, files), compress_type=deflate)
            archive.writestr("conversation.md", to_markdown(stored), compress_type=deflate)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


async def export_session(
    audio: AudioStore, stored: StoredSession, public: dict[str, Any], fmt: ExportFormat
) -> ExportFile:
    """The export of one session in ``fmt``; ``public`` is its JSON form (see :func:`document`)."""
    stem = f"conversation-{safe_stem(stored.session.id)}"
    if fmt == "json":
        return ExportFile("application/json", f"{stem}.json", content=to_json(public))
    if fmt == "markdown":
        return ExportFile(
            "text/markdown; charset=utf-8", f"{stem}.md", content=to_markdown(stored).encode()
        )
    path = await asyncio.to_thread(write_zip, audio, stored, public)
    return ExportFile("application/zip", f"{stem}.zip", path=path)
