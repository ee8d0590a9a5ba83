"""The wire format of OpenAI-compatible chat streaming: SSE framing, chunks and error bodies.

SSE (the WHATWG subset chat streaming needs): ``data:`` lines accumulate (joined by newlines),
``event:`` names the event, a blank line dispatches it, ``:`` lines are comments. A stream that
ends without a trailing blank line still dispatches its last event.

Error bodies differ between servers; all of these are understood:
OpenAI/llama.cpp ``{"error": {"message": ...}}``, vLLM ``{"object": "error", "message": ...}``,
Ollama ``{"error": "..."}`` and FastAPI ``{"detail": "..."}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from avatar.errors import EngineFailed

DONE = "[DONE]"
_OOM = re.compile(r"out of memory|\boom\b|insufficient memory", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: its name (``message`` unless the server set one) and its data."""

    data: str
    event: str = "message"


class SseParser:
    """Incremental line-based parser: feed lines, get events when a blank line dispatches one."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""

    def feed(self, line: str) -> SseEvent | None:
        """Take one line (without its line ending); return the event it completes, if any."""
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None  # id/retry/unknown fields do not matter for chat streams

    def flush(self) -> SseEvent | None:
        """Dispatch the pending event (at a blank line or at the end of the stream)."""
        event = SseEvent("\n".join(self._data), self._event or "message") if self._data else None
        self._data = []
        self._event = ""
        return event


async def iter_sse(lines: AsyncIterable[str]) -> AsyncIterator[SseEvent]:
    """Turn an async stream of text lines (e.g. ``httpx.Response.aiter_lines()``) into events."""
    parser = SseParser()
    async for line in lines:
        event = parser.feed(line.rstrip("\r\n"))
        if event is not None:
            yield event
    last = parser.flush()
    if last is not None:
        yield last


# --- chunks ---------------------------------------------------------------------------------


def parse_chunk(event: SseEvent, server: str) -> tuple[str, bool]:
    """(content delta, finished?) of one ``chat.completion.chunk``; error chunks raise."""
    try:
        chunk = json.loads(event.data)
    except ValueError:
        raise bad_response(server, f"a stream chunk is not JSON: {event.data[:80]!r}") from None
    if not isinstance(chunk, dict):
        raise bad_response(server, "a stream chunk is not a JSON object")
    message = error_message(chunk)
    if message is not None or event.event == "error":
        raise error_from_message(message or event.data[:200], server)
    choices = chunk.get("choices") or []
    if not isinstance(choices, list):
        raise bad_response(server, "'choices' is not a list")
    if not choices:
        return "", False  # e.g. a usage-only chunk
    choice = choices[0] if isinstance(choices[0], dict) else {}
    delta = choice.get("delta") or {}
    content = delta.get("content") if isinstance(delta, dict) else None
    if content is not None and not isinstance(content, str):
        raise bad_response(server, "'delta.content' is not text")
    return content or "", choice.get("finish_reason") is not None


# --- errors ---------------------------------------------------------------------------------


def error_message(body: object) -> str | None:
    """The human message of an error body in any of the known dialects, else None."""
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return err["message"]
    if isinstance(err, str):
        return err
    if body.get("object") == "error" and isinstance(body.get("message"), str):
        return body["message"]
    detail = body.get("detail")
    return detail if isinstance(detail, str) else None


def error_from_message(message: str, server: str) -> EngineFailed:
    """An error the server reported inside an otherwise successful stream."""
    if _OOM.search(message):
        return overloaded(message, server)
    return EngineFailed(
        f"the chat server at {server} reported an error mid-reply: {message}",
        hint="see the server's logs; retrying may help",
        code="engine_server_error",
        retryable=True,
    )


def error_from_status(status: int, text: str, server: str, model: str) -> EngineFailed:
    """Map an HTTP error response to a typed error that says whether a retry can help."""
    try:
        message = error_message(json.loads(text)) or text.strip()[:200]
    except ValueError:
        message = text.strip()[:200]
    detail = f"the chat server at {server} answered HTTP {status}: {message or 'no details'}"
    if _OOM.search(message):
        return overloaded(message, server)
    if status in (401, 403):
        return EngineFailed(
            detail,
            hint="set AVATAR_LLM__API_KEY to a key this server accepts",
            code="engine_auth",
            retryable=False,
        )
    if status == 404:
        return EngineFailed(
            detail,
            hint=f"check AVATAR_LLM__MODEL ({model!r}) against the server's GET /v1/models and"
            " that AVATAR_LLM__BASE_URL points at its OpenAI API (usually ending in /v1)",
            code="engine_not_found",
            retryable=False,
        )
    if status == 429:
        return EngineFailed(
            detail,
            hint="the server is rate limiting; retry shortly or lower the load",
            code="engine_rate_limited",
            retryable=True,
        )
    if status >= 500 or status == 408:
        return EngineFailed(
            detail,
            hint="the server failed; retrying may help, and its logs say why",
            code="engine_server_error",
            retryable=True,
        )
    return EngineFailed(
        detail,
        hint="the server rejected the request (a prompt longer than its context?)",
        code="engine_bad_request",
        retryable=False,
    )


def overloaded(message: str, server: str) -> EngineFailed:
    return EngineFailed(
        f"the chat server at {server} ran out of memory: {message}",
        hint="retry; if it persists, lower the server's load or context, or use a smaller model",
        code="engine_overloaded",
        retryable=True,
    )


def bad_response(server: str, why: str) -> EngineFailed:
    return EngineFailed(
        f"the chat server at {server} sent a malformed reply: {why}",
        hint="check that AVATAR_LLM__BASE_URL points at an OpenAI-compatible server",
        code="engine_bad_response",
        retryable=False,
    )


def stream_broken(server: str, why: str) -> EngineFailed:
    return EngineFailed(
        f"the reply from the chat server at {server} broke off: {why}",
        hint="the server may have crashed or restarted; retrying may help",
        code="engine_stream_broken",
        retryable=True,
    )
