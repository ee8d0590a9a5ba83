"""Servers in child processes, for tests, benchmarks and scripts: a port, readiness, stopping."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

import httpx


def closed_port() -> int:
    """A 127.0.0.1 port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until_answering(
    process: subprocess.Popen[bytes],
    url: str,
    *,
    what: str,
    log_tail: Callable[[], str],
    timeout_s: float,
    poll_s: float,
) -> None:
    """Poll ``url`` until it answers 200; a :class:`RuntimeError` with the log's tail if the
    process exits first or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{log_tail()}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)


def stop(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``."""
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
