"""Remote chat over any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, llama.cpp, Ollama).

The reply streams as server-sent events. Three explicit deadlines bound a turn:
``connect_timeout_s`` (TCP/TLS connect), ``first_token_timeout_s`` (request sent to first content
delta: covers queueing and prompt processing on the server) and ``read_timeout_s`` (largest gap
between chunks after the first). httpx's own read timeout is off because one value cannot express
"long wait for the first token, short gaps after". Time the consumer spends between deltas is not
counted: deadlines only run while this engine waits on the network.

Every failure becomes a typed :mod:`avatar.errors` error; :class:`EngineFailed` says whether a
retry could help (``retryable``). The engine never retries itself: the caller owns that policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from avatar.engines.base import ChatMessage, GenerationOptions, LlmCapabilities
from avatar.engines.llm.sse import (
    DONE,
    SseEvent,
    bad_response,
    error_from_status,
    iter_sse,
    parse_chunk,
    stream_broken,
)
from avatar.engines.remote import api_base
from avatar.errors import EngineFailed, EngineTimeout, EngineUnavailable

if TYPE_CHECKING:
    from avatar.models.store import ModelStore
    from avatar.settings import LlmSettings

# After finish_reason only [DONE] or a usage chunk can follow; never hold the turn open for them.
_TAIL_WAIT_S = 1.0


class OpenAIChat:
    """Chat model behind an OpenAI-compatible HTTP server, streamed with explicit deadlines."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        connect_timeout_s: float = 5.0,
        first_token_timeout_s: float = 20.0,
        read_timeout_s: float = 10.0,
        context_tokens: int = 4096,
    ) -> None:
        self.base_url = api_base(base_url)
        self.model = model
        self.connect_timeout_s = connect_timeout_s
        self.first_token_timeout_s = first_token_timeout_s
        self.read_timeout_s = read_timeout_s
        self.capabilities = LlmCapabilities(
            streaming=True, context_tokens=context_tokens, remote=True, json_mode=True
        )
        self._headers = {"Accept": "text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._loaded = False

    @classmethod
    def from_settings(cls, cfg: LlmSettings, models: ModelStore) -> OpenAIChat:
        if not cfg.base_url:
            raise EngineUnavailable(
                "the openai chat engine has no server URL",
                hint="set AVATAR_LLM__BASE_URL, e.g. http://localhost:8000/v1",
            )
        return cls(
            base_url=cfg.base_url,
            model=cfg.model,
            api_key=cfg.api_key.get_secret_value() if cfg.api_key else None,
            connect_timeout_s=cfg.connect_timeout_s,
            first_token_timeout_s=cfg.first_token_timeout_s,
            read_timeout_s=cfg.read_timeout_s,
            context_tokens=cfg.context_tokens,
        )

    # --- Engine -------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Nothing to load: the server holds the weights (see :meth:`list_models` to probe it)."""
        self._loaded = True

    def unload(self) -> None:
        self._loaded = False
        client, self._client = self._client, None
        if client is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop to close it on; its sockets close when it is collected
        if loop is self._client_loop:
            task = loop.create_task(client.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Close pooled connections (call at shutdown)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def count_tokens(self, text: str) -> int:
        """An estimate: the server's tokenizer is not known here (~4 characters per token)."""
        return (len(text) + 3) // 4

    # --- requests -----------------------------------------------------------------------------

    async def list_models(self) -> list[str]:
        """The model ids the server offers (``GET /models``); a cheap reachability probe."""
        client = self._http()
        try:
            async with asyncio.timeout(self.first_token_timeout_s):
                response = await client.get(f"{self.base_url}/models", headers=self._headers)
        except TimeoutError:
            raise first_token_timeout(self.base_url, self.first_token_timeout_s) from None
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            raise error_from_status(response.status_code, response.text, self.base_url, self.model)
        try:
            return [str(m["id"]) for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise bad_response(self.base_url, "GET /models did not return a model list") from None

    async def stream_chat(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncGenerator[str, None]:
        """Yield content deltas; closing the generator closes the HTTP response."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.first_token_timeout_s
        response = await self._open(self._body(messages, options), deadline)
        try:
            events = iter_sse(response.aiter_lines())
            started = finished = ended = False
            while not ended:
                if finished:
                    deadline = loop.time() + min(self.read_timeout_s, _TAIL_WAIT_S)
                elif started:
                    deadline = loop.time() + self.read_timeout_s
                try:
                    event = await self._next_event(events, deadline, started)
                except (EngineTimeout, EngineFailed):
                    if finished:
                        break  # the reply is complete; a missing tail is harmless
                    raise
                if event is None or event.data.strip() == DONE:
                    ended = event is not None
                    break
                text, done = parse_chunk(event, self.base_url)
                finished = finished or done
                if text:
                    started = True
                    yield text
            if not (ended or finished):
                raise stream_broken(self.base_url, "the stream ended without [DONE]")
        finally:
            await response.aclose()

    # --- internals ----------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        """One pooled client per event loop (connections are bound to the loop that made them)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            connect = self.connect_timeout_s
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(connect=connect, read=None, write=connect, pool=connect)
            )
            self._client_loop = loop
        return self._client

    def _body(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
        }
        if options.stop:
            body["stop"] = list(options.stop)
        if options.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    async def _open(self, body: dict[str, Any], deadline: float) -> httpx.Response:
        client = self._http()
        request = client.build_request(
            "POST", f"{self.base_url}/chat/completions", json=body, headers=self._headers
        )
        try:
            async with asyncio.timeout_at(deadline):
                response = await client.send(request, stream=True)
                if response.status_code >= 400:
                    try:
                        text = (await response.aread()).decode("utf-8", "replace")
                    finally:
                        await response.aclose()
                    raise error_from_status(response.status_code, text, self.base_url, self.model)
        except TimeoutError:
            raise first_token_timeout(self.base_url, self.first_token_timeout_s) from None
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        return response

    async def _next_event(
        self, events: AsyncIterator[SseEvent], deadline: float, started: bool
    ) -> SseEvent | None:
        try:
            async with asyncio.timeout_at(deadline):
                return await anext(events, None)
        except TimeoutError:
            if started:
                raise read_timeout(self.base_url, self.read_timeout_s) from None
            raise first_token_timeout(self.base_url, self.first_token_timeout_s) from None
        except httpx.TransportError as exc:
            raise stream_broken(self.base_url, f"the connection broke mid-stream ({exc})") from exc

    def _transport_error(self, exc: httpx.TransportError) -> Exception:
        if isinstance(exc, httpx.ConnectTimeout):
            return connect_timeout(self.base_url, self.connect_timeout_s)
        if isinstance(exc, httpx.ConnectError):
            return unreachable(self.base_url, exc)
        if isinstance(exc, httpx.TimeoutException):
            return first_token_timeout(self.base_url, self.first_token_timeout_s)
        return stream_broken(self.base_url, f"the connection broke before the reply ({exc})")


def connect_timeout(server: str, seconds: float) -> EngineTimeout:
    return EngineTimeout(
        f"could not connect to the chat server at {server} within {seconds:g} s (connect deadline)",
        hint="check that the server is up and reachable, or raise AVATAR_LLM__CONNECT_TIMEOUT_S",
    )


def first_token_timeout(server: str, seconds: float) -> EngineTimeout:
    return EngineTimeout(
        f"no reply from the chat server at {server} within {seconds:g} s (first-token deadline)",
        hint="the server may be overloaded or still loading its model;"
        " raise AVATAR_LLM__FIRST_TOKEN_TIMEOUT_S if it is just slow",
    )


def read_timeout(server: str, seconds: float) -> EngineTimeout:
    return EngineTimeout(
        f"the reply from the chat server at {server} stalled: no data for {seconds:g} s"
        " (read deadline between chunks)",
        hint="the server may be overloaded; raise AVATAR_LLM__READ_TIMEOUT_S if it is just slow",
    )


def unreachable(server: str, exc: Exception) -> EngineUnavailable:
    return EngineUnavailable(
        f"cannot reach the chat server at {server}: {exc or type(exc).__name__}",
        hint="start the server, or fix AVATAR_LLM__BASE_URL",
    )
