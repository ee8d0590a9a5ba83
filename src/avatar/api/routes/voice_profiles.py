"""Voice profiles: reference recordings (with quality report and voiceprint) for cloning engines.

Every request body on this router is capped while it streams in (:class:`CappedBodyRoute`): a
``Content-Length`` over the cap is refused before a byte is read, and a chunked body is counted
as it arrives, so an oversize upload never reaches the multipart parser's spool.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Final, TypeVar

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.requests import Request
from fastapi.responses import FileResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive

from avatar.api.auth import Reader, Writer, require_token
from avatar.api.deps import app_state, limit
from avatar.api.errors import ApiError
from avatar.api.schemas.voice_profiles import (
    NAME_CHARS,
    TEXT_CHARS,
    VoiceProfilePage,
    VoiceProfilePublic,
    VoiceProfileUpdate,
)
from avatar.api.state import AppState
from avatar.audio.encode import encode_wav
from avatar.services.voice_profiles import MAX_UPLOAD_BYTES, ProfileUpload, VoiceProfileService
from avatar.services.voices import ProfileVoices, speak_as

DEFAULT_BODY_BYTES: Final = 64 * 1024
FORM_OVERHEAD_BYTES: Final = 64 * 1024  # the text fields and multipart headers around the file
READ_CHUNK: Final = 1024 * 1024
F = TypeVar("F", bound=Callable[..., Any])


def streamed_upload(max_bytes: int) -> Callable[[F], F]:
    """Mark an endpoint as taking a body of up to ``max_bytes``, authenticated before reading."""

    def mark(endpoint: F) -> F:
        endpoint.max_body_bytes = max_bytes  # type: ignore[attr-defined]
        return endpoint

    return mark


def too_large(cap: int) -> ApiError:
    """413 for a body over ``cap`` bytes (stated in whole MiB, or KiB below 1 MiB)."""
    size = f"{cap // 2**20} MiB" if cap >= 2**20 else f"{cap // 1024} KiB"
    hint = (
        "send a shorter recording (3-60 s of speech), or compress it (FLAC, MP3)"
        if cap >= 2**20
        else "send a smaller request body"
    )
    return ApiError(
        413, f"the request is over the {size} limit", code="payload_too_large", hint=hint
    )


class _CountedReceive:
    """Wraps ASGI ``receive``; refuses once more than ``cap`` body bytes have arrived."""

    def __init__(self, receive: Receive, cap: int) -> None:
        self._receive, self.cap, self.seen, self.exceeded = receive, cap, 0, False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.cap:
                self.exceeded = True
                raise too_large(self.cap)
        return message


class CappedBodyRoute(APIRoute):
    """A route whose request body is limited while it is read (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        cap: int | None = getattr(self.endpoint, "max_body_bytes", None)
        upload = cap is not None
        limit_bytes = cap if cap is not None else DEFAULT_BODY_BYTES

        async def capped(request: Request) -> Response:
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit_bytes:
                raise too_large(limit_bytes)
            if upload:  # no anonymous client gets to stream megabytes into the spool
                await require_token(request, app_state(request))
            counted = _CountedReceive(request.receive, limit_bytes)
            try:
                return await handler(Request(request.scope, counted))
            except StarletteHTTPException as exc:
                # FastAPI reports any failure while parsing the body as a 400; say why.
                if counted.exceeded:
                    raise too_large(limit_bytes) from exc
                raise

        return capped


router = APIRouter(
    prefix="/api/voice-profiles", tags=["voice profiles"], route_class=CappedBodyRoute
)


def profile_service(state: Annotated[AppState, Depends(app_state)]) -> VoiceProfileService:
    return VoiceProfileService(state.db, state.audio, state.hub)


State = Annotated[AppState, Depends(app_state)]
Service = Annotated[VoiceProfileService, Depends(profile_service)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such voice profile."}}
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"description": "A profile with that name exists."},
    413: {"description": "Over 25 MiB, or over 60 s of audio."},
    415: {"description": "Not WAV, FLAC, MP3, Ogg (Vorbis/Opus) or WebM audio."},
    422: {"description": "Invalid fields, or under 3 s of speech (silence, noise)."},
}


async def read_upload(file: UploadFile, cap: int) -> bytes:
    """The uploaded file's bytes, refusing (413) anything over ``cap``."""
    if file.size is not None and file.size > cap:
        raise too_large(cap)
    parts, total = [], 0
    while chunk := await file.read(READ_CHUNK):
        total += len(chunk)
        if total > cap:
            raise too_large(cap)
        parts.append(chunk)
    return b"".join(parts)


@router.post(
    "", status_code=201, dependencies=[Writer, limit("profile_create")], responses=UPLOAD_ERRORS
)
@streamed_upload(MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES)
async def create_profile(
    service: Service,
    name: Annotated[str, Form(min_length=1, max_length=NAME_CHARS)],
    audio_file: Annotated[
        UploadFile,
        File(description="WAV, FLAC, MP3, OGG or WebM, 25 MiB at most, with 3-60 s of speech."),
    ],
    description: Annotated[str, Form(max_length=TEXT_CHARS)] = "",
    reference_text: Annotated[
        str, Form(max_length=TEXT_CHARS, description="Exactly what is said in the recording.")
    ] = "",
) -> VoiceProfilePublic:
    """Create a voice profile from a reference recording.

    The audio is decoded (its file name and content type are ignored), checked for 3-60 s of
    speech, measured (level, peak, clipping, signal-to-noise, ASR transcript against
    ``reference_text``), given a speaker embedding, and stored as a mono WAV. ``warnings``
    lists what to fix for a better cloning reference. ``engine_status`` says whether a
    cloning engine will speak with this voice (``cloning_ready``) or a packaged voice will
    (``packaged_voice``).
    """
    data = await read_upload(audio_file, MAX_UPLOAD_BYTES)
    upload = ProfileUpload(
        name=name, data=data, description=description, reference_text=reference_text
    )
    return VoiceProfilePublic.from_row(await service.create(upload))


@router.get("", dependencies=[Reader, limit("reads")])
async def list_profiles(
    service: Service,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number.")] = 1,
    page_size: Annotated[int, Query(ge=1, le=200, description="Profiles per page.")] = 50,
) -> VoiceProfilePage:
    """List voice profiles, newest first."""
    result = await service.list_page(page, page_size)
    return VoiceProfilePage(
        items=[VoiceProfilePublic.from_row(r) for r in result.items],
        page=result.page,
        page_size=result.page_size,
        total=result.total,
        pages=result.pages,
    )


@router.get("/{profile_id}", dependencies=[Reader, limit("reads")], responses=NOT_FOUND)
async def get_profile(service: Service, profile_id: str) -> VoiceProfilePublic:
    """One voice profile with its quality report and warnings."""
    return VoiceProfilePublic.from_row(await service.get(profile_id))


@router.put(
    "/{profile_id}",
    dependencies=[Writer, limit("writes")],
    responses={**NOT_FOUND, 409: {"description": "The new name is taken."}},
)
async def update_profile(
    service: Service, profile_id: str, body: VoiceProfileUpdate
) -> VoiceProfilePublic:
    """Rename a profile or change its description or reference text.

    A new ``reference_text`` is scored again against the stored transcript.
    """
    row = await service.update(
        profile_id, name=body.name, description=body.description, reference_text=body.reference_text
    )
    return VoiceProfilePublic.from_row(row)


@router.delete(
    "/{profile_id}", status_code=204, dependencies=[Writer, limit("writes")], responses=NOT_FOUND
)
async def delete_profile(service: Service, profile_id: str) -> Response:
    """Delete a profile and its audio; sessions using it continue with the default voice."""
    await service.delete(profile_id)
    return Response(status_code=204)


@router.get(
    "/{profile_id}/audio",
    dependencies=[Reader, limit("reads")],
    response_class=FileResponse,
    responses={
        **NOT_FOUND,
        200: {"content": {"audio/wav": {}}, "description": "The stored mono WAV."},
    },
)
async def profile_audio(service: Service, profile_id: str) -> FileResponse:
    """The profile's stored reference recording (normalised mono 16-bit WAV)."""
    path = await service.audio_file(profile_id)
    return FileResponse(
        path,
        media_type="audio/wav",
        filename=f"voice-profile-{profile_id}.wav",
        content_disposition_type="inline",
        headers={"Cache-Control": "no-store"},
    )


@router.post(
    "/{profile_id}/test",
    dependencies=[Writer, limit("profile_test")],
    response_class=Response,
    responses={
        **NOT_FOUND,
        200: {
            "content": {"audio/wav": {}},
            "description": "The spoken text; headers X-Avatar-Voice, X-Avatar-Voice-Cloned and"
            " X-Avatar-Profile-Status say which voice spoke.",
        },
    },
)
async def test_profile(
    state: State,
    service: Service,
    profile_id: str,
    text: Annotated[str, Form(min_length=1, max_length=500)],
    language: Annotated[
        str | None, Form(max_length=16, description="Default: from the text's script.")
    ] = None,
) -> Response:
    """Speak ``text`` with the profile's voice through the best engine available.

    A cloning engine (configured hq TTS with cloning) speaks in the profile's voice; without
    one the packaged voice of the text's language speaks instead. The response never hides
    which: ``X-Avatar-Voice`` names the engine voice, ``X-Avatar-Voice-Cloned`` is ``true``
    only for a cloned voice, ``X-Avatar-Profile-Status`` is the profile's ``engine_status``.
    """
    row = await service.get(profile_id)
    voices = ProfileVoices(state.db, state.audio)
    spoken = await speak_as(state.hub, voices, profile_id, text, language=language)
    headers = {
        "X-Avatar-Voice": _header_value(spoken.voice),
        "X-Avatar-Voice-Cloned": "true" if spoken.cloned else "false",
        "X-Avatar-Profile-Status": _header_value(row.engine_status),
        "X-Avatar-Voice-Language": _header_value(spoken.language),
        "Cache-Control": "no-store",
    }
    return Response(encode_wav(spoken.audio), media_type="audio/wav", headers=headers)


def _header_value(text: str) -> str:
    """Printable ASCII only, so no value can break a header line."""
    return "".join(ch for ch in text if " " <= ch <= "~")[:200]
