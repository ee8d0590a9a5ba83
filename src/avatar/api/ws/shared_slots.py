"""Voice-session admission shared by every API process through Redis (scale-out).

``AVATAR_MAX_SESSIONS`` and ``AVATAR_MAX_SESSIONS_PER_CLIENT`` then hold for the whole cluster,
not per process. Each open session holds a *lease*: one member in two Redis sorted sets (every
session; this client's sessions) scored by its expiry time on Redis' own clock, so the clocks of
the API machines never matter. Admission is one Lua script (drop expired leases, count, add), so
two processes can never both take the last slot.

A process renews its leases every ``ttl_s / 3``; one that crashes, hangs or loses its network
stops renewing and its slots come free within ``ttl_s`` (30 s by default). The keys expire as
well, so nothing is left behind once every process is gone. The keys share one hash tag, so the
scripts also run on a Redis Cluster.

When Redis cannot be reached, admission falls back to this process's own counts (the same caps,
per process) and logs a warning: an outage loosens the cap instead of refusing every voice
session. Leases taken meanwhile are registered by the next renewal once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from avatar.api.ws.limits import SessionSlots

if TYPE_CHECKING:
    from avatar.settings import Settings

log = logging.getLogger("avatar.ws")
_REDIS_DOWN = (RedisError, OSError, TimeoutError)

# Redis time in milliseconds; Redis >= 5 replicates a script's effects, so TIME before writes is
# allowed.
_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "

# KEYS: all sessions, this client's sessions. ARGV: total, per client, ttl ms, member.
# Returns {verdict, open}: 0 admitted, 1 server full, 2 client full.
_ACQUIRE = (
    _NOW
    + """
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local open = redis.call('ZCARD', KEYS[1])
if open >= tonumber(ARGV[1]) then return {1, open} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return {2, open} end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[4])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[4])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return {0, open + 1}
"""
)

# KEYS: all sessions, then one client key per lease. ARGV: ttl ms, then the leases (aligned with
# KEYS[2..]). Re-adds a lease that is gone (Redis restarted, or taken while it was down).
_RENEW = (
    _NOW
    + """
local ttl = tonumber(ARGV[1])
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[i])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
if #KEYS > 1 then redis.call('PEXPIRE', KEYS[1], ttl) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""
)

# KEYS: all sessions, this client's sessions. ARGV: member.
_RELEASE = (
    _NOW
    + """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""
)


class SessionAdmission(Protocol):
    """What /ws/chat needs: say no instead of queueing; ``open`` for /health and /info."""

    @property
    def open(self) -> int: ...

    async def acquire(self, client: str) -> str | None: ...

    async def release(self, client: str) -> None: ...

    async def count(self) -> int: ...

    async def aclose(self) -> None: ...


class LocalSessionSlots:
    """:class:`SessionSlots` (one process, no Redis) behind the async admission interface."""

    def __init__(self, total: int, per_client: int) -> None:
        self.slots = SessionSlots(total, per_client)

    @property
    def open(self) -> int:
        return self.slots.open

    async def acquire(self, client: str) -> str | None:
        return self.slots.acquire(client)

    async def release(self, client: str) -> None:
        self.slots.release(client)

    async def count(self) -> int:
        return self.slots.open

    async def aclose(self) -> None:
        return None


class SharedSessionSlots:
    """Session caps for all API processes that share one Redis (see the module docstring)."""

    def __init__(
        self,
        redis_url: str,
        total: int,
        per_client: int,
        *,
        ttl_s: float = 30.0,
        prefix: str = "avatar:ws",
        timeout_s: float = 1.0,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.total, self.per_client, self.ttl_s = total, per_client, ttl_s
        self.redis = Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._tag = "{" + prefix + "}"  # one hash tag: every key in the same cluster slot
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)
        self._leases: dict[str, list[str]] = {}  # client -> this process's leases
        self._cluster_open: int | None = None  # None: Redis failed on the last round trip
        self._reachable = True
        self._renewer: asyncio.Task[None] | None = None
        # A renewal re-adds missing leases, so one must not overtake a release of the same lease.
        self._renewing = asyncio.Lock()

    # --- the admission interface -------------------------------------------------------------

    @property
    def open(self) -> int:
        """Sessions open in the cluster as of the last Redis round trip (this process's own
        while Redis is unreachable)."""
        return self._cluster_open if self._cluster_open is not None else self.mine

    @property
    def mine(self) -> int:
        """Sessions open in this process."""
        return sum(len(leases) for leases in self._leases.values())

    async def acquire(self, client: str) -> str | None:
        """None when admitted (a lease is taken), else the reason for refusing."""
        lease = f"{self._owner}:{uuid.uuid4().hex}"
        args: list[Any] = [self.total, self.per_client, self._ttl_ms, lease]
        try:
            verdict, open_now = await self._acquire(keys=self._keys(client), args=args)
        except _REDIS_DOWN as exc:
            self._lost(exc)
            refusal = self._refusal_locally(client)
        else:
            self._reached(int(open_now))
            refusal = self._reason(int(verdict))
        if refusal is None:
            self._leases.setdefault(client, []).append(lease)
            self._keep_renewing()
        return refusal

    async def release(self, client: str) -> None:
        """Give back one of ``client``'s slots held by this process."""
        leases = self._leases.get(client)
        if not leases:
            return
        lease = leases.pop()
        if not leases:
            del self._leases[client]
        async with self._renewing:
            try:
                open_now = await self._release(keys=self._keys(client), args=[lease])
            except _REDIS_DOWN as exc:
                self._lost(exc)  # the lease expires on its own within ttl_s
            else:
                self._reached(int(open_now))

    async def count(self) -> int:
        """Sessions open in the whole cluster now (one Redis round trip; this process's own
        sessions while Redis is unreachable)."""
        try:
            open_now = await self._renew(keys=[self._all], args=[self._ttl_ms])
        except _REDIS_DOWN as exc:
            self._lost(exc)
            return self.mine
        self._reached(int(open_now))
        return int(open_now)

    async def aclose(self) -> None:
        """Shutdown: stop renewing, give back every lease this process holds, close the pool."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        with contextlib.suppress(*_REDIS_DOWN):
            async with asyncio.timeout(2.0):
                for client in list(self._leases):
                    while self._leases.get(client):
                        await self.release(client)
        self._leases.clear()
        await self.redis.aclose()

    # --- internals ---------------------------------------------------------------------------

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.ttl_s * 1000))

    @property
    def _all(self) -> str:
        return f"{self._tag}:all"

    def _keys(self, client: str) -> list[str]:
        return [self._all, f"{self._tag}:client:{client}"]

    def _reason(self, verdict: int) -> str | None:
        if verdict == 1:
            return f"the server holds its maximum of {self.total} voice sessions"
        if verdict == 2:
            return f"this client already has {self.per_client} voice sessions open"
        return None

    def _refusal_locally(self, client: str) -> str | None:
        if self.mine >= self.total:
            return self._reason(1)
        if len(self._leases.get(client, ())) >= self.per_client:
            return self._reason(2)
        return None

    def _lost(self, exc: BaseException) -> None:
        if self._reachable:
            log.warning(
                "session limits: Redis unreachable (%s); counting this process's sessions only",
                exc,
            )
        self._reachable, self._cluster_open = False, None

    def _reached(self, open_now: int) -> None:
        if not self._reachable:
            log.warning("session limits: Redis reachable again; limits are cluster-wide")
        self._reachable, self._cluster_open = True, open_now

    def _keep_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        while self._leases:
            await asyncio.sleep(self.ttl_s / 3)
            await self.renew()

    async def renew(self) -> None:
        """Push every lease of this process ``ttl_s`` into the future (the heartbeat)."""
        async with self._renewing:
            pairs = [(c, lease) for c, leases in self._leases.items() for lease in leases]
            keys = [self._all, *(self._keys(c)[1] for c, _ in pairs)]
            args: list[Any] = [self._ttl_ms, *(lease for _, lease in pairs)]
            try:
                open_now = await self._renew(keys=keys, args=args)
            except _REDIS_DOWN as exc:
                self._lost(exc)
            else:
                self._reached(int(open_now))


def session_slots(settings: Settings) -> SessionAdmission:
    """Redis-backed caps when ``AVATAR_REDIS_URL`` is set, else this process's own counts."""
    if settings.redis_url:
        return SharedSessionSlots(
            settings.redis_url, settings.max_sessions, settings.max_sessions_per_client
        )
    return LocalSessionSlots(settings.max_sessions, settings.max_sessions_per_client)
