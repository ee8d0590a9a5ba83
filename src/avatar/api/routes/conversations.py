"""Conversation history: sessions, turns, search, statistics, per-turn audio, export, delete.

The fixed paths (``/sessions``, ``/sessions/search``, ``/sessions/stats``) are declared before
``/{session_id}`` so they are never read as a session id.
"""

from __future__ import annotations

import asyncio
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from avatar.api.auth import Reader, Writer
from avatar.api.deps import app_state, limit
from avatar.api.schemas.conversations import SearchPage, SessionDetail, SessionPage, StatsPublic
from avatar.api.state import AppState
from avatar.services.conversations import ConversationService, Side
from avatar.services.export import ExportFormat, export_session

router = APIRouter(prefix="/api/conversations", tags=["conversations"])

MAX_PAGE = 1_000_000
MAX_TURN = 1_000_000


def conversation_service(state: Annotated[AppState, Depends(app_state)]) -> ConversationService:
    return ConversationService(state.db, state.audio)


Service = Annotated[ConversationService, Depends(conversation_service)]
SessionId = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="The session id (letters, digits, '_' or '-').",
    ),
]
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number.")]
PageSize = Annotated[int, Query(ge=1, le=100, description="Items per page (at most 100).")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such session (or turn, or audio)."}
}


class TempFileResponse(FileResponse):
    """Sends a temp file, then deletes it, also when the client goes away mid-download."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await asyncio.to_thread(FilePath(self.path).unlink, missing_ok=True)


def attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


@router.get("/sessions", dependencies=[Reader, limit("reads")])
async def list_sessions(
    service: Service, page: PageNumber = 1, page_size: PageSize = 20
) -> SessionPage:
    """Sessions, most recently active first, with their title, language and turn count."""
    return SessionPage.from_page(await service.list_sessions(page, page_size))


@router.get("/sessions/search", dependencies=[Reader, limit("search")])
async def search(
    service: Service,
    query: Annotated[str, Query(max_length=200, description="Words to find, taken literally.")],
    page: PageNumber = 1,
    page_size: PageSize = 20,
) -> SearchPage:
    """Turns whose user or assistant text contains every word of ``query`` (case-insensitive).

    Every character is literal (quotes, operators, wildcards are not syntax). Snippets are
    HTML-escaped with the matches wrapped in ``<mark>``, safe to insert as HTML.
    """
    return SearchPage.from_page(query, await service.search(query, page, page_size))


@router.get("/sessions/stats", dependencies=[Reader, limit("search")])
async def stats(service: Service) -> StatsPublic:
    """Sessions, turns, audio minutes, and average / p95 of each stage latency."""
    return StatsPublic.from_stats(await service.stats())


@router.get("/{session_id}", dependencies=[Reader, limit("reads")], responses=NOT_FOUND)
async def get_session(service: Service, session_id: SessionId) -> SessionDetail:
    """One session with all its turns: texts, what was heard, metrics, audio durations and URLs."""
    return SessionDetail.from_stored(await service.get_session(session_id))


@router.get(
    "/{session_id}/audio/{turn}",
    dependencies=[Reader, limit("reads")],
    response_class=FileResponse,
    responses={
        200: {"content": {"audio/wav": {}}, "description": "The turn's audio."},
        **NOT_FOUND,
    },
)
async def turn_audio(
    service: Service,
    session_id: SessionId,
    turn: Annotated[int, Path(ge=1, le=MAX_TURN, description="1-based turn number.")],
    side: Annotated[Side, Query(description="Whose voice: the user's or the reply.")] = (
        "assistant"
    ),
) -> FileResponse:
    """The recorded audio of one side of a turn (WAV), to play or download."""
    found = await service.turn_audio(session_id, turn, side)
    return FileResponse(
        found.path,
        media_type=found.media_type,
        filename=found.filename,
        content_disposition_type="inline",
        headers={"Cache-Control": "private, no-cache"},
    )


@router.post(
    "/{session_id}/export",
    dependencies=[Writer, limit("export")],
    response_class=Response,
    responses={
        200: {
            "content": {"application/json": {}, "text/markdown": {}, "application/zip": {}},
            "description": "The export as a file download.",
        },
        **NOT_FOUND,
    },
)
async def export(
    service: Service,
    session_id: SessionId,
    format: Annotated[ExportFormat, Query(description="json, markdown or zip (with audio).")] = (
        "json"
    ),
) -> Response:
    """Download a session: full JSON, a Markdown transcript, or a zip of both plus all audio."""
    stored = await service.get_session(session_id)
    public = SessionDetail.from_stored(stored).model_dump(mode="json")
    found = await export_session(service.audio, stored, public, format)
    if found.path is not None:
        return TempFileResponse(found.path, media_type=found.media_type, filename=found.filename)
    return Response(found.content, media_type=found.media_type, headers=attachment(found.filename))


@router.delete(
    "/{session_id}",
    status_code=204,
    dependencies=[Writer, limit("writes")],
    response_class=Response,
    responses=NOT_FOUND,
)
async def delete_session(service: Service, session_id: SessionId) -> Response:
    """Delete a session, its turns, and then the audio files they referenced."""
    await service.delete_session(session_id)
    return Response(status_code=204)
