"""Refusing a WebSocket handshake with a reason: an HTTP status and a problem+json body.

A refused handshake used to be a bare 403, so a client could not tell a missing token from a
foreign origin. Where the server supports the WebSocket Denial Response extension (uvicorn does),
the refusal is a normal HTTP response the client can read; elsewhere it falls back to close 1008.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import WebSocket

from avatar.api.auth import presented_token, token_matches
from avatar.api.errors import problem
from avatar.api.security import origin_allowed
from avatar.api.state import AppState

TOKEN_HINT = "send 'Authorization: Bearer <token>', or sign in on the web page for the cookie"


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    detail: str
    hint: str | None = None


def refusal(ws: WebSocket, state: AppState) -> Refusal | None:
    """Why this handshake is refused (origin first, then the token, then a session id already
    in use), or None to accept it."""
    if not origin_allowed(ws, state.settings.server.allowed_origins):
        origin = ws.headers.get("origin", "")
        hint = "open the page from this server, or list it in AVATAR_SERVER__ALLOWED_ORIGINS"
        return Refusal(403, "origin_not_allowed", f"origin {origin} is not allowed", hint)
    token = presented_token(ws)  # type: ignore[arg-type]
    if token is None and "token" in ws.query_params:
        detail = "a token in the query string is not accepted (it would land in logs)"
        return Refusal(401, "token_in_query", detail, TOKEN_HINT)
    if token is None:
        return Refusal(401, "missing_token", "no API token was sent", TOKEN_HINT)
    if not token_matches(state, token):
        return Refusal(401, "wrong_token", "the API token is wrong", "check AVATAR_API_TOKEN")
    if ws.query_params.get("session_id") in state.open_sessions:  # two would share one entry
        detail = "this session_id is already in use by another connection"
        return Refusal(409, "session_id_in_use", detail, "close the other one, or use a new id")
    return None


async def refuse(ws: WebSocket, why: Refusal) -> None:
    """Answer the handshake with ``why`` as HTTP, or close 1008 naming it."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        headers = {"WWW-Authenticate": "Bearer"} if why.status == 401 else None
        response = problem(why.status, why.code, why.detail, hint=why.hint, headers=headers)
        await ws.send_denial_response(response)
    else:
        await ws.close(code=1008, reason=why.code)
