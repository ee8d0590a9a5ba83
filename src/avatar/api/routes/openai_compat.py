"""OpenAI-compatible ``/v1`` routes, so the official ``openai`` SDK and tools built on it can use
AVATAR's engines: transcription, speech, chat completions (whole or streamed) and the model list.

Authentication is AVATAR's API token as the SDK's ``api_key`` (``Authorization: Bearer``).
Rate limits per client and route are settings (``AVATAR_RATE_LIMITS__CHAT`` …, see settings).
Model names are not enforced: AVATAR answers with its configured engines whatever the request
names ("whisper-1", "tts-1", "gpt-4o-mini" all work); ``tts-1-hd`` uses the hq TTS when one is
configured. Errors have OpenAI's shape (see :mod:`avatar.api.routes.openai_errors`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from avatar.api.auth import Reader, Writer
from avatar.api.deps import app_state, rate_limit
from avatar.api.routes.openai_errors import (
    ERROR_RESPONSES,
    UPLOAD_LIMIT,
    OpenAIRoute,
    error_body,
    model_not_found,
    unsupported_parameter,
    upload_too_large,
)
from avatar.api.schemas.openai import (
    AssistantMessage,
    ChatCompletionChunkPublic,
    ChatCompletionCreate,
    ChatCompletionPublic,
    Choice,
    ChunkChoice,
    Delta,
    Granularity,
    ModelListPublic,
    ModelPublic,
    SpeechCreate,
    TranscriptionFormat,
    TranscriptionPublic,
    TranscriptionSegment,
    TranscriptionVerbosePublic,
    TranscriptionWord,
    Usage,
    chat_stream_event,
)
from avatar.api.state import AppState
from avatar.audio.decode import AudioLimits, decode_audio
from avatar.engines.base import ChatModel, TimedTranscript
from avatar.errors import AvatarError
from avatar.models.catalog import aliases_of
from avatar.services import openai_chat, openai_speech, subtitles

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)
State = Annotated[AppState, Depends(app_state)]
AUDIO_LIMITS = AudioLimits(max_bytes=UPLOAD_LIMIT, max_duration_s=300.0)
READ_BLOCK = 1 << 20
JSON = "application/json"


def _responses(*statuses: int, ok: dict[str, Any] | None = None) -> dict[int | str, Any]:
    out: dict[int | str, Any] = {s: ERROR_RESPONSES[s] for s in (400, 401, 429, *statuses)}
    if ok is not None:
        out[200] = ok
    return out


async def _read_upload(file: UploadFile) -> bytes:
    chunks, size = [], 0
    while block := await file.read(READ_BLOCK):
        size += len(block)
        if size > UPLOAD_LIMIT:
            raise upload_too_large()
        chunks.append(block)
    return b"".join(chunks)


@router.post(
    "/audio/transcriptions",
    dependencies=[Writer, Depends(rate_limit("transcription"))],
    response_model=TranscriptionPublic | TranscriptionVerbosePublic,
    responses=_responses(
        413, 415, 503, ok={"content": {"text/plain": {"schema": {"type": "string"}}}}
    ),
)
async def create_transcription(
    state: State,
    file: Annotated[
        UploadFile,
        File(
            description="Audio: wav, flac, ogg, opus, webm, mp3, m4a/mp4 or aac;"
            " 25 MiB and 300 s at most."
        ),
    ],
    model: Annotated[str, Form(min_length=1, max_length=200, examples=["whisper-1"])],
    granularities: Annotated[
        list[Granularity],
        Form(
            alias="timestamp_granularities[]",
            default_factory=list,
            description="With verbose_json: `segment` (always given) and/or `word`.",
        ),
    ],
    language: Annotated[str | None, Form(min_length=1, max_length=16)] = None,
    prompt: Annotated[str | None, Form(max_length=4096, description="Accepted, ignored.")] = None,
    response_format: Annotated[TranscriptionFormat, Form()] = "json",
    temperature: Annotated[float, Form(ge=0.0, le=1.0, description="Accepted, ignored.")] = 0.0,
) -> Response:
    """Transcribe an audio file (OpenAI's ``audio.transcriptions.create``): plain text, JSON,
    ``verbose_json`` with timed segments (and words on request), SRT or WebVTT subtitles."""
    words = "word" in (granularities or ())
    if words and response_format != "verbose_json":
        raise unsupported_parameter("timestamp_granularities", "word times need verbose_json")
    if words and not subtitles.has_word_timestamps(state.hub.stt):
        raise unsupported_parameter("timestamp_granularities", "this STT engine has no word times")
    data = await _read_upload(file)
    # Decoding is CPU work: off the event loop, so voice sessions keep streaming meanwhile.
    audio = await asyncio.to_thread(decode_audio, data, limits=AUDIO_LIMITS, target_rate=16_000)
    if response_format in ("json", "text"):
        text = (await state.hub.stt.transcribe(audio, language=language)).text.strip()
        if response_format == "text":
            return PlainTextResponse(text)
        return Response(TranscriptionPublic(text=text).model_dump_json(), media_type=JSON)
    timed = await subtitles.timed_transcript(state.hub.stt, audio, language=language, words=words)
    if response_format == "srt":
        return PlainTextResponse(subtitles.srt(timed.segments))
    if response_format == "vtt":
        return PlainTextResponse(subtitles.vtt(timed.segments), media_type="text/vtt")
    return Response(_verbose(timed, language, words).model_dump_json(), media_type=JSON)


def _verbose(
    timed: TimedTranscript, language: str | None, words: bool
) -> TranscriptionVerbosePublic:
    segments = [
        TranscriptionSegment(
            id=n,
            start=s.start,
            end=s.end,
            text=s.text,
            avg_logprob=s.avg_logprob,
            compression_ratio=s.compression_ratio,
            no_speech_prob=s.no_speech_prob,
        )
        for n, s in enumerate(timed.segments)
    ]
    word_list = [
        TranscriptionWord(word=w.word, start=w.start, end=w.end)
        for s in timed.segments
        for w in s.words
    ]
    return TranscriptionVerbosePublic(
        language=timed.language or language or "",
        duration=round(timed.duration_s, 2),
        text=timed.text,
        segments=segments,
        words=word_list if words else None,
    )


@router.post(
    "/audio/speech",
    dependencies=[Writer, Depends(rate_limit("speech"))],
    response_class=Response,
    responses=_responses(
        413,
        503,
        ok={
            "description": "The audio, in the requested format.",
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in openai_speech.MEDIA_TYPES.values()
            },
            "headers": {
                "X-Avatar-Voice": {
                    "schema": {"type": "string"},
                    "description": "The engine voice that spoke.",
                },
                "X-Avatar-Voice-Cloned": {"schema": {"type": "string"}},
            },
        },
    ),
)
async def create_speech(body: SpeechCreate, state: State) -> Response:
    """Speak text (OpenAI's ``audio.speech.create``).

    ``voice`` may name a voice profile (id or name); any other name ("alloy", ...) means the
    default voice. The embedded TTS cannot clone: it speaks profiles with its packaged voice,
    and ``X-Avatar-Voice`` / ``X-Avatar-Voice-Cloned`` say which voice spoke. ``pcm`` is raw
    16-bit little-endian mono at 24 kHz, as OpenAI's.
    """
    result = await openai_speech.synthesize(
        state.hub,
        state.db,
        state.audio,
        text=body.input,
        voice=body.voice,
        model=body.model,
        response_format=body.response_format,
        speed=body.speed,
    )
    headers = {
        "X-Avatar-Voice": result.voice.label,
        "X-Avatar-Voice-Cloned": str(result.voice.cloned).lower(),
        "X-Avatar-TTS-Mode": result.mode,
        "X-Avatar-Sample-Rate": str(result.sample_rate),
    }
    if result.voice.profile is not None:
        headers["X-Avatar-Voice-Profile"] = result.voice.profile.id
    return Response(result.data, media_type=result.media_type, headers=headers)


@router.post(
    "/chat/completions",
    dependencies=[Writer, Depends(rate_limit("chat"))],
    response_model=ChatCompletionPublic,
    responses=_responses(
        413,
        502,
        503,
        504,
        ok={
            "content": {
                "text/event-stream": {
                    "itemSchema": chat_stream_event(),
                    "description": "With stream=true: `data: <chat.completion.chunk>` events, then "
                    "`data: [DONE]`.",
                }
            }
        },
    ),
)
async def create_chat_completion(
    body: ChatCompletionCreate, state: State
) -> ChatCompletionPublic | StreamingResponse:
    """Answer a conversation (OpenAI's ``chat.completions.create``), whole or streamed (SSE).

    Without a system message the configured system prompt is used. Text content only.
    ``response_format: {"type": "json_object"}`` constrains the reply to one JSON object;
    ``tools``, ``logprobs``, audio output and ``json_schema`` are refused with a 400.
    """
    llm = state.hub.llm
    if body.json_mode and not llm.capabilities.json_mode:
        raise unsupported_parameter("response_format", "this chat engine has no JSON mode")
    cfg = state.settings.llm
    messages = [(m.role, m.text()) for m in body.messages]
    run = openai_chat.ChatRun(
        model=cfg.model,
        messages=openai_chat.engine_messages(messages, cfg.system_prompt),
        options=openai_chat.generation_options(
            cfg,
            body.max_completion_tokens or body.max_tokens,
            body.temperature,
            body.stop_sequences(),
            json_mode=body.json_mode,
        ),
    )
    deltas = await openai_chat.start(llm, run, state.hub.health)  # failures feed /health
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _events(llm, run, deltas, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    await openai_chat.drain(deltas)
    usage = await openai_chat.usage(llm, run)
    return ChatCompletionPublic(
        id=run.id,
        created=run.created,
        model=run.model,
        choices=[
            Choice(message=AssistantMessage(content=run.reply), finish_reason=usage.finish_reason)
        ],
        usage=_public(usage),
    )


def _public(usage: openai_chat.Usage) -> Usage:
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


async def _events(
    llm: ChatModel, run: openai_chat.ChatRun, deltas: AsyncIterator[str], include_usage: bool
) -> AsyncIterator[str]:
    def event(choices: list[ChunkChoice], usage: Usage | None = None) -> str:
        chunk = ChatCompletionChunkPublic(
            id=run.id, created=run.created, model=run.model, choices=choices, usage=usage
        )
        return f"data: {chunk.model_dump_json()}\n\n"

    try:
        yield event([ChunkChoice(delta=Delta(role="assistant", content=""))])
        async for delta in deltas:
            yield event([ChunkChoice(delta=Delta(content=delta))])
        usage = await openai_chat.usage(llm, run)
        yield event([ChunkChoice(delta=Delta(), finish_reason=usage.finish_reason)])
        if include_usage:
            yield event([], _public(usage))
        yield "data: [DONE]\n\n"
    except AvatarError as exc:  # the stream has begun: the error travels as an event
        error = error_body(exc.http_status, exc.code, exc.message, exc.hint)
        yield f"data: {error.model_dump_json()}\n\n"
    finally:
        await openai_chat.close(deltas)


@router.get(
    "/models",
    dependencies=[Reader, Depends(rate_limit("models"))],
    responses={s: ERROR_RESPONSES[s] for s in (401, 429)},
)
async def list_models(state: State) -> ModelListPublic:
    """The configured models (speech-to-text, chat, text-to-speech), OpenAI's list format."""
    return ModelListPublic(data=configured_models(state))


@router.get(
    "/models/{model_id:path}",
    dependencies=[Reader, Depends(rate_limit("models"))],
    responses={s: ERROR_RESPONSES[s] for s in (401, 404, 429)},
)
async def retrieve_model(model_id: str, state: State) -> ModelPublic:
    """One configured model by id (OpenAI's ``models.retrieve``); earlier ids are aliases."""
    for model in configured_models(state):
        if model_id == model.id or model_id in aliases_of(model.id):
            return model
    raise model_not_found(model_id)


def configured_models(state: AppState) -> list[ModelPublic]:
    s = state.settings
    slots = [
        ("stt", s.stt.model),
        ("llm", s.llm.model),
        ("tts", s.tts.fast.model or s.tts.fast.engine),
    ]
    if s.tts.hq is not None:
        slots.append(("tts.hq", s.tts.hq.model or s.tts.hq.engine))
    seen: dict[str, ModelPublic] = {}
    for slot, name in slots:
        seen.setdefault(name, ModelPublic(id=name, owned_by=f"avatar ({slot})"))
    return list(seen.values())
