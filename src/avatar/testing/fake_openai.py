"""A fake OpenAI-compatible chat server for fault injection (tests and benchmarks share it).

Each :class:`FakeMode` scripts one way a real backend behaves or fails. The mode can be switched
while the server runs (``POST /_fake/mode {"mode": "ok"}``) to show that the next turn works once
the backend recovers; ``GET /_fake/state`` tells what the server received.

    with running_fake_openai(FakeMode.HANG_BEFORE_FIRST_TOKEN) as base_url: ...
    python -m avatar.testing.fake_openai --mode trickle --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from avatar.testing.processes import closed_port, stop, wait_until_answering
from avatar.testing.serving import serve_in_thread

DEFAULT_TOKENS = ("Hello", "!", " I", " am", " a", " fake", " model", ".")
DEFAULT_MODEL = "fake-model"


class FakeMode(StrEnum):
    """How the fake answers ``POST /v1/chat/completions``."""

    OK = "ok"  # streams ``tokens`` every ``token_interval_s``, then finish_reason and [DONE]
    REFUSED = "refused"  # nothing listens (only through running_fake_openai)
    CONNECT_HANG = "connect_hang"  # TCP connect never completes (only through running_fake_openai)
    HTTP_500 = "http_500"
    HTTP_401 = "http_401"
    HTTP_400 = "http_400"  # the request is refused as too long for the model's context
    HTTP_429 = "http_429"  # rate limited
    HANG_BEFORE_FIRST_TOKEN = "hang_before_first_token"  # headers, then silence
    DROP_AFTER_K = "drop_after_k"  # ``drop_after`` deltas, then the stream ends without [DONE]
    MALFORMED_STREAM = "malformed_stream"  # one good delta, then a chunk that is not JSON
    TRICKLE = "trickle"  # one token per second
    OOM = "oom"  # HTTP 500 with an OpenAI-style "CUDA out of memory" error body
    OOM_MIDSTREAM = "oom_midstream"  # a few deltas, then an error chunk about CUDA OOM


_NO_APP = frozenset({FakeMode.REFUSED, FakeMode.CONNECT_HANG})


@dataclass
class FakeState:
    """The fake's script and what it has seen (mutable: the mode switches at run time)."""

    mode: FakeMode
    tokens: Sequence[str] = DEFAULT_TOKENS
    token_interval_s: float = 0.01
    drop_after: int = 3
    drop_abruptly: bool = False  # True: reset the connection instead of ending the body cleanly
    models: Sequence[str] = (DEFAULT_MODEL,)  # requests for other models get HTTP 404
    api_key: str | None = None  # when set, other bearer tokens get HTTP 401
    requests: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    open_streams: int = 0  # reply streams still being written (drops to 0 when clients hang up)


def _chunk(model: str, content: str | None = None, finish: str | None = None) -> str:
    delta = {"role": "assistant"} if content is None and finish is None else {}
    if content is not None:
        delta["content"] = content
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status)


class _Dropped(Exception):
    """Raised inside the body iterator so uvicorn drops the connection mid-body."""


async def _stream(state: FakeState, mode: FakeMode, model: str) -> AsyncIterator[str]:
    state.open_streams += 1
    try:
        async for part in _script(state, mode, model):
            yield part
    finally:
        state.open_streams -= 1


async def _script(state: FakeState, mode: FakeMode, model: str) -> AsyncIterator[str]:
    if mode is FakeMode.HANG_BEFORE_FIRST_TOKEN:
        await asyncio.sleep(3600)  # cancelled when the client disconnects
    yield _chunk(model)
    interval = 1.0 if mode is FakeMode.TRICKLE else state.token_interval_s
    for i, token in enumerate(state.tokens):
        if mode is FakeMode.DROP_AFTER_K and i == state.drop_after:
            if state.drop_abruptly:
                raise _Dropped
            return
        if mode is FakeMode.MALFORMED_STREAM and i == 1:
            yield 'data: {"choices": [{"delta": {"content": "oops"\n\n'
            return
        if mode is FakeMode.OOM_MIDSTREAM and i == 2:
            yield 'data: {"error": {"message": "CUDA out of memory", "type": "server_error"}}\n\n'
            return
        await asyncio.sleep(interval)
        yield _chunk(model, token)
    yield _chunk(model, finish="stop")
    yield "data: [DONE]\n\n"


def create_fake_openai_app(mode: FakeMode = FakeMode.OK, **script: Any) -> FastAPI:
    """The fake as an ASGI app; ``script`` sets the other :class:`FakeState` fields."""
    if mode in _NO_APP:
        raise ValueError(f"{mode.value} has no app: use running_fake_openai")
    state = FakeState(mode=mode, **script)
    app = FastAPI(title="AVATAR fake OpenAI-compatible server")
    app.state.fake = state

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [{"id": m, "object": "model", "owned_by": "avatar-fake"} for m in state.models]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        auth = request.headers.get("authorization")
        state.requests.append(body)
        state.authorizations.append(auth)
        mode, model = state.mode, str(body.get("model"))
        if mode is FakeMode.HTTP_401 or (state.api_key and auth != f"Bearer {state.api_key}"):
            return _error(401, "Incorrect API key provided", "invalid_request_error")
        if model not in state.models:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        if mode is FakeMode.HTTP_500:
            return _error(500, "Internal server error (fake)", "server_error")
        if mode is FakeMode.HTTP_400:
            message = "This model's maximum context length is 2048 tokens (fake)"
            return _error(400, message, "invalid_request_error")
        if mode is FakeMode.HTTP_429:
            return _error(429, "Rate limit reached (fake)", "rate_limit_error")
        if mode is FakeMode.OOM:
            return _error(500, "CUDA out of memory. Tried to allocate 2.00 GiB", "server_error")
        return StreamingResponse(_stream(state, mode, model), media_type="text/event-stream")

    @app.post("/_fake/mode")
    async def set_mode(payload: dict[str, str]) -> dict[str, str]:
        try:
            new = FakeMode(payload.get("mode", ""))
        except ValueError:
            known = [m.value for m in FakeMode]
            raise HTTPException(422, f"unknown mode; one of {known}") from None
        if new in _NO_APP:
            raise HTTPException(422, f"a running server cannot switch to {new.value}")
        state.mode = new
        return {"mode": new.value}

    @app.get("/_fake/state")
    async def get_state() -> dict[str, Any]:
        return {
            "mode": state.mode.value,
            "requests": state.requests,
            "authorizations": state.authorizations,
            "open_streams": state.open_streams,
        }

    return app


def set_fake_mode(base_url: str, mode: FakeMode) -> None:
    """Switch a running fake (``base_url`` as returned by :func:`running_fake_openai`)."""
    root = base_url.removesuffix("/v1")
    httpx.post(f"{root}/_fake/mode", json={"mode": mode.value}, timeout=5).raise_for_status()


def fake_state(base_url: str) -> dict[str, Any]:
    """What a running fake has received so far."""
    root = base_url.removesuffix("/v1")
    response = httpx.get(f"{root}/_fake/state", timeout=5)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def request_count(base_url: str) -> int:
    """How many chat requests a running fake has received so far."""
    return len(fake_state(base_url)["requests"])


@contextmanager
def _unaccepting_port() -> Iterator[int]:
    """A port whose accept queue is full, so the next TCP connect hangs (Linux drops the SYN)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port: int = server.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            yield port
        finally:
            for filler in fillers:
                filler.close()


@contextmanager
def running_fake_openai(
    mode: FakeMode = FakeMode.OK, *, port: int = 0, **script: Any
) -> Iterator[str]:
    """Serve the fake on 127.0.0.1 in a background thread; yields ``http://127.0.0.1:PORT/v1``.

    ``port`` 0 picks a free one; give the port of an earlier REFUSED fake to bring that
    "server" up (the same URL that refused connections now answers).
    """
    if mode is FakeMode.REFUSED:
        yield f"http://127.0.0.1:{port or closed_port()}/v1"
        return
    if mode is FakeMode.CONNECT_HANG:
        with _unaccepting_port() as hanging:
            yield f"http://127.0.0.1:{hanging}/v1"
        return
    app = create_fake_openai_app(mode, **script)
    options: dict[str, Any] = {"lifespan": "off", "timeout_graceful_shutdown": 1}
    what = "the fake OpenAI server"
    with serve_in_thread(
        app, port=port, what=what, start_timeout_s=10, log_level="critical", **options
    ) as served:
        yield f"{served.url}/v1"


@contextmanager
def spawned_fake_openai(token_interval_s: float = 0.01) -> Iterator[str]:
    """The fake in a process of its own (mode ``ok``; switch with :func:`set_fake_mode`).

    For measurements: the fake's work then competes with the server under test only for CPU,
    not for the interpreter lock. Yields ``http://127.0.0.1:PORT/v1``.
    """
    port = closed_port()
    command = [sys.executable, "-m", "avatar.testing.fake_openai", "--port", str(port)]
    command += ["--token-interval", str(token_interval_s)]
    base_url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryFile() as log:

        def log_tail() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")[-1000:]

        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_until_answering(
                process,
                f"{base_url}/models",
                what="the fake OpenAI server",
                log_tail=log_tail,
                timeout_s=30,
                poll_s=0.05,
            )
            yield base_url
        finally:
            stop(process, grace_s=10)


_CLI_ALIASES = {
    "hang": "hang_before_first_token",
    "drop": "drop_after_k",
    "malformed": "malformed_stream",
}


def _cli_mode(value: str) -> FakeMode:
    mode = FakeMode(_CLI_ALIASES.get(value, value))
    if mode in _NO_APP:
        raise ValueError(value)
    return mode


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    names = [m.value for m in FakeMode if m not in _NO_APP] + list(_CLI_ALIASES)
    parser.add_argument("--mode", type=_cli_mode, default=FakeMode.OK, help=", ".join(names))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--token-interval", type=float, default=0.05)
    args = parser.parse_args(argv)
    app = create_fake_openai_app(args.mode, token_interval_s=args.token_interval)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
