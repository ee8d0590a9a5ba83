"""The uvicorn server AVATAR runs: voice sessions end with 1001 before uvicorn's own shutdown.

uvicorn's shutdown closes every WebSocket with 1012 before the app's lifespan ends, so the
lifespan alone cannot store what each user heard and say "going away" (1001). This subclass
closes the voice sessions first, then lets uvicorn finish.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

from avatar.api.ws.connection import close_sessions


class AvatarServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self.avatar_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = getattr(self.avatar_app.state, "avatar", None)
        if state is not None:
            await close_sessions(state)  # stores what was heard, closes with 1001
        await super().shutdown(sockets)
