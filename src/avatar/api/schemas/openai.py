"""Request and response bodies of the OpenAI-compatible ``/v1`` routes.

They follow OpenAI's API reference closely enough for the official SDK to parse them; fields
AVATAR does not use are accepted and ignored (``extra="ignore"``), so tools that send more of
OpenAI's options keep working.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_SPEECH_CHARS = 4096
MAX_MESSAGES = 256
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
TranscriptionFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]
Granularity = Literal["segment", "word"]


class _Request(BaseModel):
    # strict: JSON ``false`` is not a temperature, ``"1"`` not a count.
    model_config = ConfigDict(extra="ignore", strict=True)


# --- errors ---------------------------------------------------------------------------------


class OpenAIErrorDetail(BaseModel):
    """OpenAI's error object; ``code`` is AVATAR's stable error code."""

    message: str
    type: str
    param: str | None = None
    code: str


class OpenAIErrorPublic(BaseModel):
    """Error body of every ``/v1`` route: OpenAI's shape, ``{"error": {...}}`` alone."""

    error: OpenAIErrorDetail


# --- audio ----------------------------------------------------------------------------------


class TranscriptionPublic(BaseModel):
    """``response_format=json``."""

    text: str


class TranscriptionSegment(BaseModel):
    """A segment with its times in seconds and the decoder's figures (OpenAI's fields)."""

    id: int
    seek: int = 0
    start: float
    end: float
    text: str
    tokens: list[int] = Field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None


class TranscriptionWord(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionVerbosePublic(BaseModel):
    """``response_format=verbose_json``: the text with its language, duration and segments;
    ``words`` when ``timestamp_granularities[]=word`` was asked for."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task": "transcribe",
                    "language": "en",
                    "duration": 2.6,
                    "text": "The quick brown fox jumps over the lazy dog.",
                    "segments": [
                        {
                            "id": 0,
                            "seek": 0,
                            "start": 0.0,
                            "end": 2.4,
                            "text": "The quick brown fox jumps over the lazy dog.",
                            "tokens": [],
                            "temperature": 0.0,
                            "avg_logprob": -0.21,
                            "compression_ratio": 0.85,
                            "no_speech_prob": 0.01,
                        }
                    ],
                    "words": [{"word": "The", "start": 0.0, "end": 0.18}],
                }
            ]
        }
    )

    task: Literal["transcribe"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment] = Field(default_factory=list)
    words: list[TranscriptionWord] | None = None


class SpeechCreate(_Request):
    """``POST /v1/audio/speech``."""

    model: str = Field(..., min_length=1, max_length=200, examples=["tts-1"])
    input: str = Field(
        ...,
        min_length=1,
        max_length=MAX_SPEECH_CHARS,
        pattern=r"\w",
        description="The text to speak (at least one letter or digit).",
    )
    voice: str = Field(
        ...,
        min_length=1,
        max_length=100,
        description="A voice profile (id or name), or any other name for the default voice.",
        examples=["alloy"],
    )
    response_format: SpeechFormat = Field(
        "mp3", description="pcm is raw 16-bit little-endian mono at 24 kHz, as OpenAI's."
    )
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Tempo; pitch is kept.")
    instructions: str | None = Field(None, max_length=4096, description="Accepted, ignored.")


# --- chat -----------------------------------------------------------------------------------


class TextPart(_Request):
    """A text content part; AVATAR's chat models read text only."""

    type: Literal["text"]
    text: str


class ChatMessageIn(_Request):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = Field(None, max_length=64)

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Request):
    include_usage: bool = False


class ResponseFormat(_Request):
    """``text`` (the default) or ``json_object`` (the reply is one valid JSON object)."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: Literal["text", "json_object"]


UNSUPPORTED: dict[str, str] = {
    "tools": "tool calls are not supported by AVATAR's chat engines",
    "tool_choice": "tool calls are not supported by AVATAR's chat engines",
    "functions": "function calls are not supported",
    "function_call": "function calls are not supported",
    "logprobs": "log probabilities are not returned",
    "top_logprobs": "log probabilities are not returned",
    "modalities": "only text output: use /v1/audio/speech for audio",
    "audio": "audio output: use /v1/audio/speech",
    "response_format": 'only {"type": "text"} and {"type": "json_object"}',
}


class ChatCompletionCreate(_Request):
    """``POST /v1/chat/completions``.

    Options that would change the reply but that AVATAR cannot honour (``tools``, ``logprobs``,
    audio output, ``json_schema``) are refused with a 400 naming the parameter, never ignored;
    sampling hints it does not use (``top_p``, ``seed``, penalties, ``user``) are ignored.
    """

    model_config = ConfigDict(
        extra="ignore",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "model": "qwen2.5-coder-0.5b-instruct",
                    "messages": [
                        {"role": "system", "content": "Answer in one short sentence."},
                        {"role": "user", "content": "What is the capital of France?"},
                    ],
                    "stream": False,
                    "max_tokens": 64,
                },
                {
                    "model": "qwen2.5-coder-0.5b-instruct",
                    "messages": [{"role": "user", "content": 'Paris as JSON: {"city": ...}'}],
                    "response_format": {"type": "json_object"},
                },
            ]
        },
    )

    model: str = Field(..., min_length=1, max_length=200)
    messages: list[ChatMessageIn] = Field(..., min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=32_768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32_768)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    n: Literal[1] = Field(1, description="Only one choice is generated.")
    response_format: ResponseFormat | None = Field(
        None,
        examples=[{"type": "json_object"}],
        description="`json_object` constrains the reply to valid JSON (llama.cpp grammar).",
    )
    # Options AVATAR cannot honour: the schema allows only their "off" values, and a request that
    # turns one on is refused with a 400 that names it and says why (``UNSUPPORTED``).
    tools: Annotated[list[Any], Field(max_length=0)] | None = Field(
        None, description="Not supported: refused when non-empty."
    )
    tool_choice: Literal["none"] | None = Field(None, description="Only `none`.")
    functions: Annotated[list[Any], Field(max_length=0)] | None = Field(
        None, description="Not supported."
    )
    function_call: Literal["none"] | None = Field(None, description="Only `none`.")
    logprobs: Literal[False] | None = Field(None, description="Not supported when true.")

    @field_validator("logprobs", mode="before")
    @classmethod
    def _a_real_false(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, bool):  # 0 == False for Literal checks
            raise ValueError("must be false")
        return value

    top_logprobs: None = Field(None, description="Not supported.")
    modalities: list[Literal["text"]] | None = Field(None, description="Only `text`.")
    audio: None = Field(None, description="Not supported (use /v1/audio/speech).")

    @property
    def json_mode(self) -> bool:
        return self.response_format is not None and self.response_format.type == "json_object"

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        items = [self.stop] if isinstance(self.stop, str) else self.stop
        return tuple(s for s in items if s)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class ChatCompletionPublic(BaseModel):
    """A whole reply (``stream=false``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "chatcmpl-5f0c8e0d2f7b4c1e9a3d6b2a1c0e9f8d",
                    "object": "chat.completion",
                    "created": 1765000000,
                    "model": "qwen2.5-coder-0.5b-instruct",
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": "The capital of France is Paris.",
                            },
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 31, "completion_tokens": 8, "total_tokens": 39},
                }
            ]
        }
    )

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunkPublic(BaseModel):
    """One server-sent event of a streamed reply (``stream=true``)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


# --- models ---------------------------------------------------------------------------------


class ModelPublic(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "avatar"


class ModelListPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "object": "list",
                    "data": [
                        {
                            "id": "whisper-base",
                            "object": "model",
                            "created": 0,
                            "owned_by": "avatar (stt)",
                        },
                        {
                            "id": "qwen2.5-coder-0.5b-instruct",
                            "object": "model",
                            "created": 0,
                            "owned_by": "avatar (llm)",
                        },
                    ],
                }
            ]
        }
    )

    object: Literal["list"] = "list"
    data: list[ModelPublic]


# --- OpenAPI documentation of the event stream ------------------------------------------------


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON Schema with every ``$defs`` reference inlined (for use inside OpenAPI)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def chat_stream_event() -> dict[str, Any]:
    """One server-sent event of a streamed chat completion (OpenAPI 3.2 ``itemSchema``)."""
    payload = {
        "anyOf": [inline_schema(ChatCompletionChunkPublic), inline_schema(OpenAIErrorPublic)]
    }
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "string",
                "description": "A chat.completion.chunk, an error object, or the final [DONE].",
                "anyOf": [
                    {"const": "[DONE]"},
                    {"contentMediaType": "application/json", "contentSchema": payload},
                ],
            },
            "event": {"type": "string"},
        },
    }
