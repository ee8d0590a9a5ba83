"""The uvicorn server AVATAR runs, and the uvicorn settings every way of starting it shares.

uvicorn's shutdown closes every WebSocket with 1012 before the app's lifespan ends, so the
lifespan alone cannot store what each user heard and say "going away" (1001).
:class:`AvatarServer` closes the voice sessions first, then lets uvicorn finish.

:func:`uvicorn_config` holds what a server facing the network needs (issue 16): proxy headers
believed only from configured proxies, a cap on open connections, slow headers cut off, no query
strings (a one-time login code) in the access log; :func:`raise_open_files_limit` and
:class:`OncePerInterval` keep a flood of connections from starving the server and its log.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import time
from typing import Any

import uvicorn

from avatar.api.limits_middleware import HeaderDeadlineH11Protocol
from avatar.api.ws.connection import close_sessions
from avatar.redaction import strip_credentials
from avatar.settings import Settings

ACCEPT_FAILED = "socket.accept() out of system resource"


class AvatarServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self.avatar_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = getattr(self.avatar_app.state, "avatar", None)
        if state is not None:
            await close_sessions(state)  # stores what was heard, closes with 1001
        await super().shutdown(sockets)


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The server's uvicorn settings; ``overrides`` (tests: port, log level) win."""
    # FORWARDED_ALLOW_IPS is uvicorn's own name for it, which DEPLOY.md used to advise.
    proxies = settings.server.trusted_proxies or [
        p.strip() for p in os.environ.get("FORWARDED_ALLOW_IPS", "").split(",") if p.strip()
    ]
    options: dict[str, Any] = {
        "host": settings.server.host,
        "port": settings.server.port,
        "log_level": settings.log_level,
        "ws_max_size": 1 << 20,
        "http": HeaderDeadlineH11Protocol,  # cuts off slowloris headers
        "timeout_graceful_shutdown": 8,  # SIGTERM: out within 10 s
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: any local process could
        # then pick its own address and step around the per-client limits.
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": ",".join(proxies) if proxies else "",
        "limit_concurrency": settings.server.limit_concurrency,
        **overrides,
    }
    config = uvicorn.Config(app, **options)
    quiet_access_log()
    return config


class AccessLogFilter(logging.Filter):
    """Drops the query string from uvicorn's access lines (a login code must not be kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path = args[2].split("?", 1)[0]
            record.args = (args[0], args[1], path, args[3], args[4])
        return True


class SecretFilter(logging.Filter):
    """Strips ``user:password@`` from every URL in a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = strip_credentials(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class OncePerInterval(logging.Filter):
    """Lets a log line containing ``text`` through at most once per ``interval_s``, with the
    number suppressed since (asyncio logs a failed ``accept()`` once per attempt: 378,034
    lines in 20 s when out of file descriptors)."""

    def __init__(self, text: str, interval_s: float = 10.0) -> None:
        super().__init__()
        self.text, self.interval_s = text, interval_s
        self.last, self.suppressed = float("-inf"), 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text not in str(record.msg):
            return True
        now = time.monotonic()
        if now - self.last < self.interval_s:
            self.suppressed += 1
            return False
        if self.suppressed:
            record.msg = f"{record.msg} ({self.suppressed} more like it suppressed)"
        self.last, self.suppressed = now, 0
        return True


def quiet_access_log() -> None:
    """Install the filters (idempotent): after ``uvicorn.Config`` and ``logging.basicConfig``,
    which make the handlers."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogFilter) for f in access.filters):
        access.addFilter(AccessLogFilter())
    loop_log = logging.getLogger("asyncio")
    if not any(isinstance(f, OncePerInterval) for f in loop_log.filters):
        loop_log.addFilter(OncePerInterval(ACCEPT_FAILED))
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:  # handlers see every child's records
            if not any(isinstance(f, SecretFilter) for f in handler.filters):
                handler.addFilter(SecretFilter())


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one (often 1,024 of 1,048,576); returns
    (before, after). A server out of descriptors cannot accept even its owner's requests."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            return soft, soft
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]
