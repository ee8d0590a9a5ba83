"""FastAPI dependencies the routers share: the app state, and rate limits per client and route.

Kept apart from :mod:`avatar.api.state` (what the server holds) and :mod:`avatar.api.ratelimit`
(the limiter) so that neither of those needs the other's module.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from limits import RateLimitItem, parse

from avatar.api.ratelimit import client_key
from avatar.api.state import AppState, connection_state
from avatar.settings import RateLimitSettings


def app_state(request: Request) -> AppState:
    return connection_state(request)


State = Annotated[AppState, Depends(app_state)]


@functools.lru_cache(maxsize=64)
def _item(spec: str) -> RateLimitItem:
    return parse(spec)


def rate_limit(name: str) -> Callable[..., Awaitable[None]]:
    """A route dependency enforcing the ``rate_limits.<name>`` setting per client and route
    (read at each request, so a changed setting applies at once; '' means no limit)."""
    if name not in RateLimitSettings.model_fields:
        raise ValueError(f"no rate limit setting {name!r}")

    async def check(request: Request, state: State) -> None:
        spec = getattr(state.settings.rate_limits, name)
        if not spec:
            return
        route = request.scope.get("route")
        path = getattr(route, "path", request.url.path)
        await state.limits.hit(_item(spec), client_key(request, state), request.method, path)

    return check


def limit(name: str) -> Any:
    return Depends(rate_limit(name))
