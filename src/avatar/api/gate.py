"""Who may send a request body, and for how long: checked before any byte of it is read.

:class:`RequestGate` sits in front of the body limits and every route (issue 16):
- a cookie-authenticated write (and any sign-in) whose ``Origin`` or ``Sec-Fetch-Site`` says
  another site sent it is refused with 403 ``foreign_origin``: SameSite=Strict does not separate
  other ports of the same host or sibling subdomains;
- a request with a body and without the token is refused with 401 before its body is read
  (sign-in, whose body is the token, takes at most :data:`LOGIN_BODY_BYTES`): the server no
  longer buffers a megabyte for anyone who connects;
- every body must keep coming: each chunk within :data:`BODY_CHUNK_S`, the whole body within
  :data:`BODY_TOTAL_S` (:data:`UPLOAD_TOTAL_S` for uploads), or 408 ``body_timeout`` and the
  connection is closed. A client trickling one byte every few seconds no longer holds a
  connection (and its memory) for as long as it likes.
"""

from __future__ import annotations

import asyncio
from typing import Final

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from avatar.api.auth import COOKIE, LOGIN_PATH, presented_token, token_matches
from avatar.api.limits_middleware import UPLOAD_ROUTES, linger, refuse
from avatar.api.security import foreign_request

UNSAFE: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOGIN_BODY_BYTES: Final = 4096
BODY_CHUNK_S: Final = 10.0
BODY_TOTAL_S: Final = 60.0
UPLOAD_TOTAL_S: Final = 300.0
# What an unauthenticated client may still send after its 401 (so it reads the answer).
REFUSED_LINGER_S: Final = 2.0


class BodyTimeout(Exception):
    """Raised from ``receive`` when a body stops coming or takes too long."""


class RequestGate:
    """Origin check for cookie writes, token before body, body deadlines (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        refusal = self.refusal(conn)
        if refusal is not None:
            status, code, text = refusal
            await refuse(scope, send, status, code, text)
            await linger(receive, REFUSED_LINGER_S, REFUSED_LINGER_S / 2)
            await send({"type": "http.response.body", "body": b""})
            return
        if not _has_body(conn.headers):
            await self.app(scope, receive, send)
            return
        await _with_deadlines(self.app, scope, receive, send)

    def refusal(self, conn: HTTPConnection) -> tuple[int, str, tuple[str, str]] | None:
        """Why this request is refused before its body is read, or None."""
        state = conn.app.state.avatar
        method, path = conn.scope["method"], conn.scope["path"].rstrip("/") or "/"
        bearer = conn.headers.get("authorization", "").lower().startswith("bearer ")
        by_cookie = not bearer and COOKIE in conn.cookies
        checked = method in UNSAFE and (by_cookie or path == LOGIN_PATH)
        if checked and foreign_request(conn, state.settings.server.allowed_origins):
            return 403, "foreign_origin", _FOREIGN
        if not _has_body(conn.headers):
            return None
        if path == LOGIN_PATH:
            declared = conn.headers.get("content-length", "")
            if not declared.isdigit() or int(declared) > LOGIN_BODY_BYTES:
                return 413, "payload_too_large", _LOGIN_TOO_LARGE
            return None
        if not token_matches(state, presented_token(conn)):  # type: ignore[arg-type]
            return 401, "unauthorized", _UNAUTHORIZED  # answered with WWW-Authenticate: Bearer
        return None


_FOREIGN = (
    "this request came from another site's page",
    "send writes from the AVATAR web UI itself, or add the origin to "
    "AVATAR_SERVER__ALLOWED_ORIGINS",
)
_UNAUTHORIZED = (
    "missing or wrong API token",
    "send 'Authorization: Bearer <token>' or sign in at /",
)
_LOGIN_TOO_LARGE = (
    f"a sign-in body must declare its length and be at most {LOGIN_BODY_BYTES} bytes",
    "send the token as a small form",
)
_TIMEOUT = (
    "the request body stopped coming or took too long",
    f"send each part of the body within {BODY_CHUNK_S:.0f} s",
)


def _has_body(headers: Headers) -> bool:
    declared = headers.get("content-length", "").strip()
    return "transfer-encoding" in headers or declared not in ("", "0")


async def _with_deadlines(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    loop = asyncio.get_running_loop()
    upload = (scope["method"], scope["path"].rstrip("/")) in UPLOAD_ROUTES
    deadline = loop.time() + (UPLOAD_TOTAL_S if upload else BODY_TOTAL_S)
    timed_out, started, body_done = False, False, False

    async def timed() -> Message:
        nonlocal timed_out, body_done
        if body_done:  # after the body: the disconnect message, with no deadline
            return await receive()
        left = min(BODY_CHUNK_S, deadline - loop.time())
        try:
            message = await asyncio.wait_for(receive(), max(left, 0.0))
        except TimeoutError:
            timed_out = True
            raise BodyTimeout from None
        body_done = not message.get("more_body", False)
        return message

    async def guarded(message: Message) -> None:
        nonlocal started
        if timed_out and not started:
            return  # whatever the app made of the failed read (400, 500): ours is sent below
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await app(scope, timed, guarded)
    except Exception:
        if not timed_out:
            raise
    if timed_out and not started:
        await refuse(scope, send, 408, "body_timeout", _TIMEOUT)
        await send({"type": "http.response.body", "body": b""})
