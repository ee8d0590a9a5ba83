"""Rate limits per client and route, in memory by default or in Redis for several processes.

Built on the ``limits`` library (moving window). Exceeding a limit answers 429 with Retry-After.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from avatar.api.errors import ApiError
from avatar.api.state import AppState, app_state
from avatar.settings import RateLimitSettings

log = logging.getLogger("avatar.limits")
REDIS_SCHEMES = ("redis", "rediss", "redis+unix")


class RateLimits:
    """One limiter for the app; ``storage_url`` None keeps counters in this process.

    With Redis the budget is shared by every API process. If Redis becomes unreachable the
    limits fall back to this process's memory (logged once) instead of failing requests.
    """

    def __init__(self, storage_url: str | None = None) -> None:
        self.local = MovingWindowRateLimiter(MemoryStorage())
        self.limiter = self.local
        if storage_url and storage_url.split("://", 1)[0] in REDIS_SCHEMES:
            storage = RedisStorage(
                f"async+{storage_url}", implementation="redispy", key_prefix="avatar"
            )
            self.limiter = MovingWindowRateLimiter(storage)
        self.enabled = True
        self._warned = False

    async def hit(self, item: RateLimitItem, *keys: str) -> None:
        if not self.enabled:
            return
        try:
            allowed = await self.limiter.hit(item, *keys)
            limiter = self.limiter
        except (OSError, RedisError) as exc:
            if not self._warned:
                log.warning("rate-limit storage unreachable (%s): limiting per process", exc)
                self._warned = True
            allowed, limiter = await self.local.hit(item, *keys), self.local
        if allowed:
            return
        reset_at, _ = await limiter.get_window_stats(item, *keys)
        retry = max(1, math.ceil(reset_at - time.time()))
        raise ApiError(
            429,
            f"rate limit of {item} exceeded",
            code="rate_limited",
            hint=f"retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )


def client_key(request: Request, state: AppState) -> str:
    """The API token's fingerprint when the request carries the right one, else its address."""
    from avatar.api.auth import presented_token, token_matches  # auth imports this module

    token = presented_token(request)
    if token and token_matches(state, token):
        return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    return request.client.host if request.client else "unknown"


@functools.lru_cache(maxsize=64)
def _item(spec: str) -> RateLimitItem:
    return parse(spec)


def rate_limit(name: str) -> Callable[..., Awaitable[None]]:
    """A route dependency enforcing the ``rate_limits.<name>`` setting per client and route."""
    if name not in RateLimitSettings.model_fields:
        raise ValueError(f"no rate limit setting {name!r}")

    async def check(request: Request, state: Annotated[AppState, Depends(app_state)]) -> None:
        spec = getattr(state.settings.rate_limits, name)
        if not spec:
            return
        route = request.scope.get("route")
        path = getattr(route, "path", request.url.path)
        await state.limits.hit(_item(spec), client_key(request, state), request.method, path)

    return check


def limit(name: str) -> Any:
    return Depends(rate_limit(name))
