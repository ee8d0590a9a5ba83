"""Admission for voice sessions: a global cap (AVATAR_MAX_SESSIONS) and a per-client cap."""

from __future__ import annotations

from collections import Counter


class SessionSlots:
    """Counts open sessions; ``acquire`` says no instead of queueing."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total, self.per_client = total, per_client
        self._by_client: Counter[str] = Counter()

    @property
    def open(self) -> int:
        return sum(self._by_client.values())

    def acquire(self, client: str) -> str | None:
        """None when admitted, else the reason for refusing."""
        if self.open >= self.total:
            return f"the server holds its maximum of {self.total} voice sessions"
        if self._by_client[client] >= self.per_client:
            return f"this client already has {self.per_client} voice sessions open"
        self._by_client[client] += 1
        return None

    def release(self, client: str) -> None:
        self._by_client[client] -= 1
        if self._by_client[client] <= 0:
            del self._by_client[client]
