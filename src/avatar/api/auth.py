"""The API token: Bearer header for programs, an HttpOnly cookie (set by /login) for browsers.

When ``AVATAR_API_TOKEN`` is unset a random token is made at start and a login URL is printed,
as Jupyter does. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from avatar.api.deps import app_state
from avatar.api.errors import ApiError
from avatar.api.state import AppState

COOKIE = "avatar_token"


def presented_token(request: Request) -> str | None:
    """The token a request carries: ``Authorization: Bearer`` first, then the login cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return request.cookies.get(COOKIE)


def token_matches(state: AppState, candidate: str | None) -> bool:
    if not candidate:
        return False
    return secrets.compare_digest(candidate.encode(), state.api_token.encode())


def _unauthorized() -> ApiError:
    return ApiError(
        401,
        "missing or wrong API token",
        code="unauthorized",
        hint="send 'Authorization: Bearer <token>' or log in at /login",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def require_token(request: Request, state: Annotated[AppState, Depends(app_state)]) -> None:
    """Dependency for writes (and for reads unless open reads are on)."""
    if not token_matches(state, presented_token(request)):
        raise _unauthorized()


async def require_read(request: Request, state: Annotated[AppState, Depends(app_state)]) -> None:
    """Reads need the token too, unless ``AVATAR_OPEN_READS=true`` restores open reads."""
    if not state.settings.open_reads:
        await require_token(request, state)


Writer = Depends(require_token)
Reader = Depends(require_read)

router = APIRouter(tags=["auth"])


@router.get("/login", include_in_schema=False)
async def login(
    request: Request,
    state: Annotated[AppState, Depends(app_state)],
    token: Annotated[str, Query()] = "",
) -> Response:
    """Exchange the login URL's token for an HttpOnly cookie, then go to the UI."""
    if not token_matches(state, token):
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/?login=failed", status_code=303)  # the UI explains
        raise _unauthorized()
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/",
        secure=request.url.scheme == "https",
        max_age=30 * 24 * 3600,
    )
    return response


@router.post("/logout", include_in_schema=False)
async def logout() -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
