"""Request limits in front of every route: body size caps, a JSON nesting guard, a header deadline.

:class:`BodyLimitMiddleware` is defence in depth under the per-route caps (voice profiles,
``/v1``): whatever route a body reaches, and whether or not that route reads it,
- a ``Content-Length`` over the path's cap is refused with 413 before a byte of the body is read;
- a chunked body is counted as it streams and cut off with 413 once past the cap;
- a JSON body deeper than :data:`MAX_JSON_DEPTH` is refused with 422 before FastAPI parses it
  (FastAPI answers a 400 for what :mod:`json` refuses with RecursionError, about 1000 levels,
  and accepts anything shallower).
A refused body (and one a route answered without reading) is drained for a bounded time and
the connection closed, so a client cannot keep streaming into a discarded body yet still reads
the answer.

:class:`HeaderDeadlineH11Protocol` is uvicorn's h11 protocol plus a deadline on reading each
request's headers: stock uvicorn arms no timer until a response is complete, so a client that
trickles one header byte at a time (slowloris) holds its connection forever.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Final

import h11
import numpy as np
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

MiB: Final = 1024 * 1024
# The upload routes' own cap: 25 MiB of audio plus the multipart framing around it, so the
# limit a client is told is the same whichever layer refuses.
UPLOAD_BODY_BYTES: Final = 25 * MiB + 64 * 1024
JSON_BODY_BYTES: Final = 1 * MiB
MAX_JSON_DEPTH: Final = 64
UPLOAD_ROUTES: Final = frozenset(
    {("POST", "/api/voice-profiles"), ("POST", "/v1/audio/transcriptions")}
)
# A string runs to its closing quote or, unterminated, to the end: every match attempt succeeds
# in one pass, so no input makes the scan quadratic (an unterminated string would otherwise be
# rescanned from each quote inside it).
_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.?)*+(?:"|\Z)', re.DOTALL)
_OPEN: Final = np.frombuffer(b"[{", np.uint8)
_CLOSE: Final = np.frombuffer(b"]}", np.uint8)
_CLOSE_HDR: Final = (b"connection", b"close")
LINGER_S: Final = 30.0  # as nginx lingering_time
LINGER_IDLE_S: Final = 5.0  # as nginx lingering_timeout
LINGER_BYTES: Final = 32 * MiB


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a streamed body passes its cap."""


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in ``body`` (brackets inside strings skipped)."""
    data = np.frombuffer(_STRING.sub(b"", body), np.uint8)
    steps = np.isin(data, _OPEN).astype(np.int32) - np.isin(data, _CLOSE).astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))


def _is_json(headers: Headers) -> bool:
    kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return kind in ("", "application/json") or (
        kind.startswith("application/") and kind.endswith("+json")
    )


class BodyLimitMiddleware:
    """Caps request bodies per path (see the module docstring); uploads are never buffered."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        upload_bytes: int = UPLOAD_BODY_BYTES,
        body_bytes: int = JSON_BODY_BYTES,
        max_json_depth: int = MAX_JSON_DEPTH,
    ) -> None:
        self.app = app
        self.upload_bytes, self.body_bytes, self.max_json_depth = (
            upload_bytes,
            body_bytes,
            max_json_depth,
        )

    def is_upload(self, method: str, path: str) -> bool:
        return (method, path.rstrip("/") or "/") in UPLOAD_ROUTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        upload = self.is_upload(scope["method"], scope["path"])
        cap = self.upload_bytes if upload else self.body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > cap:
            await _too_large(scope, send, cap, receive)
            return
        has_body = "transfer-encoding" in headers or (declared or "0").strip() not in ("", "0")
        if has_body and not upload and _is_json(headers):
            await self._json(scope, receive, send, cap)
            return
        await self._streamed(scope, receive, send, cap, has_body)

    async def _streamed(
        self, scope: Scope, receive: Receive, send: Send, cap: int, has_body: bool
    ) -> None:
        seen, exceeded, body_done = 0, False, not has_body
        app_started, replaced, closing = False, False, False

        async def counted() -> Message:
            nonlocal seen, exceeded, body_done
            if exceeded:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > cap:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal app_started, replaced, closing
            if replaced:
                return
            if message["type"] == "http.response.start":
                # A route that reported our 413 itself (in its own error shape) is let through;
                # anything else it made of the failed read (FastAPI says 400) is replaced.
                if exceeded and message["status"] != 413:
                    replaced = True
                    await _too_large(scope, send, cap, receive)
                    return
                app_started = True
                if not body_done:  # answered before the body ended: don't take the rest
                    closing = True
                    message = {**message, "headers": [*message.get("headers", []), _CLOSE_HDR]}
            elif closing and not message.get("more_body", False):
                await send({**message, "more_body": True})
                await linger(receive)
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except BodyTooLarge:
            pass
        except Exception:
            if not exceeded:
                raise
        if exceeded and not app_started and not replaced:
            await _too_large(scope, send, cap, receive)

    async def _json(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        parts, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            parts.append(message.get("body", b""))
            seen += len(parts[-1])
            if seen > cap:
                await _too_large(scope, send, cap, receive)
                return
            more = message.get("more_body", False)
        body = b"".join(parts)
        depth = json_depth(body)
        if depth > self.max_json_depth:
            limit = self.max_json_depth
            detail = f"the JSON body nests {depth} levels deep; at most {limit} are allowed"
            await refuse(
                scope, send, 422, "json_too_deep", (detail, "send a flatter JSON document")
            )
            await send({"type": "http.response.body", "body": b""})
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(scope: Scope, send: Send, cap: int, unread: Receive | None) -> None:
    detail = f"the request body is over the {cap // MiB} MiB limit"
    await refuse(scope, send, 413, "payload_too_large", (detail, "send a smaller request body"))
    if unread is not None:
        await linger(unread)
    await send({"type": "http.response.body", "body": b""})


async def linger(
    receive: Receive, total_s: float = LINGER_S, idle_s: float = LINGER_IDLE_S
) -> None:
    """Read and drop what the client is still sending, within bounds, before the socket closes.

    Most clients send the whole body before they read the answer, and closing a socket with
    unread input makes the kernel send a reset that destroys the answer unread: nginx's
    "lingering close" exists for this. A body slightly over its cap is drained and the client
    sees the 413; a huge one is cut off after :data:`LINGER_BYTES` or :data:`LINGER_S`.
    """
    loop = asyncio.get_running_loop()
    deadline, dropped = loop.time() + total_s, 0
    while dropped < LINGER_BYTES and (left := deadline - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(receive(), min(left, idle_s))
        except TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        dropped += len(message.get("body", b""))


_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


async def refuse(scope: Scope, send: Send, status: int, code: str, text: tuple[str, str]) -> None:
    """Start the error response (``connection: close``); the caller sends the final, empty part."""
    detail, hint = text
    body: dict[str, Any] = {
        "type": f"about:blank#{code}",
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
        "hint": hint,
    }
    media = b"application/problem+json"
    if scope["path"].startswith("/v1/"):  # OpenAI's error object alone, as the SDK reads it
        kind = _OPENAI_TYPES.get(status, "invalid_request_error")
        error = {"message": f"{detail} ({hint})", "type": kind, "param": None, "code": code}
        body, media = {"error": error}, b"application/json"
    payload = json.dumps(body).encode()
    headers = [(b"content-type", media), (b"content-length", b"%d" % len(payload)), _CLOSE_HDR]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": True})


class HeaderDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers take too long.

    The deadline runs from the connection's start and again from each response's end (covering
    keep-alive reuse); it is cancelled once a request's headers are complete. Pass the class as
    ``uvicorn.Config(http=...)``; subclass it to change :attr:`header_timeout_s`.
    """

    header_timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._cancel_header_deadline()  # the WebSocket protocol takes the connection over
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_timer = self.loop.call_later(
            self.header_timeout_s, self._header_deadline_passed
        )

    def _cancel_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        # IDLE: the client has not finished a request's headers (a request in progress, or a
        # WebSocket upgrade, has moved past it).
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
