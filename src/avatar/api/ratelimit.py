"""Rate limits per client and route, in memory by default or in Redis for several processes.

Built on the ``limits`` library (moving window). Exceeding a limit answers 429 with Retry-After.
The route dependency (``limit("chat")``, a ``rate_limits`` setting) is in :mod:`avatar.api.deps`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from typing import TYPE_CHECKING

from fastapi import Request
from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from avatar.api.errors import ApiError

if TYPE_CHECKING:
    from avatar.api.state import AppState

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
