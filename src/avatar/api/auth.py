"""The API token: Bearer header for programs, an HttpOnly cookie (set by /login) for browsers.

When ``AVATAR_API_TOKEN`` is unset a random token is made at start and printed with a one-click
sign-in link, as Jupyter does; the link carries a one-time code, not the token, so the access
log and the browser's history keep nothing that still works. The sign-in form posts the token.
Tokens are compared in constant time and never logged; failed sign-ins are throttled.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

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
        hint="send 'Authorization: Bearer <token>' or sign in at /",
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
LOGIN_PATH = "/login"
FAILED_LOGINS = parse("10/minute")  # per client address; then 429 until the window passes


class LoginGuard:
    """One-time sign-in codes (the printed link) and a throttle on failed sign-ins."""

    def __init__(self) -> None:
        self.codes: set[str] = set()
        self.failures = MovingWindowRateLimiter(MemoryStorage())

    def new_code(self) -> str:
        code = secrets.token_urlsafe(24)
        self.codes.add(code)
        return code

    def redeem(self, code: str) -> bool:
        """True once per code: a link from a log or a browser's history is spent."""
        for known in list(self.codes):
            if secrets.compare_digest(known.encode(), code.encode()):
                self.codes.discard(known)
                return True
        return False

    async def check_throttle(self, client: str) -> None:
        if not await self.failures.test(FAILED_LOGINS, client):
            raise ApiError(
                429,
                "too many failed sign-ins from this address",
                code="rate_limited",
                hint="wait a minute, then sign in with the right token",
                headers={"Retry-After": "60"},
            )

    async def failed(self, client: str) -> None:
        await self.failures.hit(FAILED_LOGINS, client)


def login_guard(request: Request) -> LoginGuard:
    return request.app.state.login_guard


Guard = Annotated[LoginGuard, Depends(login_guard)]


async def _unthrottled_client(request: Request, guard: LoginGuard) -> str:
    """The address signing in; refused (429) while it is throttled for failed attempts."""
    client = request.client.host if request.client else "unknown"
    await guard.check_throttle(client)
    return client


@router.post(LOGIN_PATH, include_in_schema=False)
async def login(
    request: Request,
    state: Annotated[AppState, Depends(app_state)],
    guard: Guard,
    token: Annotated[str, Form()] = "",
) -> Response:
    """Exchange the token (a form field: never in a URL or a log) for an HttpOnly cookie."""
    client = await _unthrottled_client(request, guard)
    if not token_matches(state, token):
        await guard.failed(client)
        return _failed(request)
    return _signed_in(request, token)


@router.get(LOGIN_PATH, include_in_schema=False)
async def login_link(
    request: Request,
    state: Annotated[AppState, Depends(app_state)],
    guard: Guard,
    code: Annotated[str, Query()] = "",
) -> Response:
    """The one-click link ``avatar serve`` prints: its code works once."""
    client = await _unthrottled_client(request, guard)
    if not code or not guard.redeem(code):
        await guard.failed(client)
        return _failed(request)
    return _signed_in(request, state.api_token)


def _failed(request: Request) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/?login=failed", status_code=303)  # the UI explains
    raise _unauthorized()


def _signed_in(request: Request, token: str) -> Response:
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
