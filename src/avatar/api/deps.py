"""FastAPI dependencies the routers share: the app state, and rate limits per client and route.

Kept apart from :mod:`avatar.api.state` (what the server holds) and :mod:`avatar.api.ratelimit`
(the limiter) so that neither of those needs the other's module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from limits import parse

from avatar.api.ratelimit import client_key
from avatar.api.state import AppState, connection_state


def app_state(request: Request) -> AppState:
    return connection_state(request)


State = Annotated[AppState, Depends(app_state)]


def rate_limit(spec: str) -> Callable[..., Awaitable[None]]:
    """A route dependency enforcing ``spec`` (e.g. "5/minute") per client and route."""
    item = parse(spec)

    async def check(request: Request, state: State) -> None:
        route = request.scope.get("route")
        path = getattr(route, "path", request.url.path)
        await state.limits.hit(item, client_key(request), request.method, path)

    return check


def limit(spec: str) -> Any:
    return Depends(rate_limit(spec))
