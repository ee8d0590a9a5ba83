"""Serve an ASGI app with uvicorn on a loopback port in a background thread (tests, benchmarks).

The one runner every in-process test server uses: the AVATAR app in the test suite, the fake
OpenAI server, and the stand-in remote STT/TTS servers. The socket is bound here, before uvicorn
starts, so the port is known (and never raced for) by the time the server answers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass(frozen=True)
class Served:
    """A running server: where it listens, and the uvicorn server behind it."""

    port: int
    server: uvicorn.Server

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop_soon(self) -> None:
        """Ask uvicorn to shut down now (a server dropping mid-reply); the context still joins."""
        self.server.should_exit = True


def bound_socket(port: int = 0) -> socket.socket:
    """A 127.0.0.1 socket bound to ``port`` (0: any free one); reusable right after a close."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@contextmanager
def serve_in_thread(
    app: Any,
    *,
    port: int = 0,
    what: str = "test server",
    start_timeout_s: float = 60.0,
    stop_timeout_s: float = 15.0,
    **options: Any,
) -> Iterator[Served]:
    """Run ``app`` until the block ends; ``options`` go to :class:`uvicorn.Config`.

    ``port`` 0 picks a free port; give an earlier one to serve again at the same address.
    A :class:`RuntimeError` if the server has not started within ``start_timeout_s``.
    """
    sock = bound_socket(port)
    config = uvicorn.Config(app, **{"log_level": "warning", **options})
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.02)
        yield Served(sock.getsockname()[1], server)
    finally:
        server.should_exit = True
        thread.join(stop_timeout_s)
        sock.close()
