"""Remote TTS over any OpenAI-compatible ``/v1/audio/speech`` server (OpenAI, speaches, Kokoro…).

One request per call, one audio chunk back (batch; the pipeline's text chunker makes it stream
by sentence). ``response_format`` 'wav' is decoded with soundfile and its own sample rate is
read from the header; 'pcm' is taken as s16le mono at ``sample_rate`` (24 kHz, OpenAI's rate).
Chunks are resampled to ``capabilities.sample_rate`` (default 24,000 Hz) so the engine keeps
one output rate whatever the server sends.

``timeout_s`` bounds connecting, each read, and the whole request. Failures become typed
errors: unreachable -> EngineUnavailable, deadline -> EngineTimeout, HTTP 4xx -> EngineFailed
(not retryable, except 408/429), HTTP 5xx -> EngineFailed (retryable).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import numpy as np
import soundfile
import soxr

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import TtsCapabilities, VoiceRef
from avatar.engines.remote import api_base
from avatar.engines.tts.language import require_text
from avatar.errors import EngineFailed, EngineTimeout, EngineUnavailable
from avatar.models.store import ModelStore
from avatar.settings import TtsSlotSettings

DEFAULT_SAMPLE_RATE = 24_000  # OpenAI's tts-1 rate; also how 'pcm' responses are read
ResponseFormat = Literal["wav", "pcm"]


class OpenAITextToSpeech:
    """Speech from an OpenAI-compatible server; the server's voices, no local weights."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str = "tts-1",
        voice: str = "alloy",
        api_key: str | None = None,
        timeout_s: float = 30.0,
        response_format: ResponseFormat = "wav",
        sample_rate: int = DEFAULT_SAMPLE_RATE,
    ) -> None:
        self.base_url = api_base(base_url)
        self.model = model
        self.voice = voice
        self.timeout_s = timeout_s
        self.response_format = response_format
        self.capabilities = TtsCapabilities(sample_rate=sample_rate, languages=None, quality="hq")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._loaded = False

    @classmethod
    def from_settings(cls, cfg: TtsSlotSettings, models: ModelStore) -> OpenAITextToSpeech:
        if not cfg.base_url:
            raise EngineUnavailable(
                "the openai TTS engine has no server URL",
                hint="set AVATAR_TTS__HQ__BASE_URL (or __FAST__), e.g. http://localhost:8000/v1",
            )
        return cls(
            base_url=cfg.base_url,
            model=cfg.model or "tts-1",
            voice=cfg.voice or "alloy",
            api_key=cfg.api_key.get_secret_value() if cfg.api_key else None,
            timeout_s=cfg.timeout_s,
        )

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Nothing to load: the server holds the weights."""
        self._loaded = True

    def unload(self) -> None:
        self._loaded = False
        self._client = None  # its sockets close when it is collected; aclose() at shutdown

    async def aclose(self) -> None:
        """Close pooled connections (call at shutdown)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def describe_voice(self, language: str, voice: VoiceRef | None) -> str:
        name = voice.name if voice is not None and voice.name else self.voice
        label = f"openai:{self.model}/{name}"
        if voice is not None and voice.reference_audio is not None:
            return f"{label} (server voice; reference audio is not sent)"
        return label

    async def synthesize_stream(
        self, text: str, *, language: str = "en", voice: VoiceRef | None = None
    ) -> AsyncIterator[PcmAudio]:
        body: dict[str, Any] = {
            "model": self.model,
            "input": require_text(text),
            "voice": voice.name if voice is not None and voice.name else self.voice,
            "response_format": self.response_format,
        }
        yield self._to_output_rate(self._decode(await self._post(body)))

    # --- internals ----------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        """One pooled client per event loop (connections are bound to the loop that made them)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s))
            self._client_loop = loop
        return self._client

    async def _post(self, body: dict[str, Any]) -> bytes:
        url = f"{self.base_url}/audio/speech"
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._http().post(url, json=body, headers=self._headers)
        except (TimeoutError, httpx.TimeoutException):
            raise EngineTimeout(
                f"no speech from the TTS server at {self.base_url} within {self.timeout_s:g} s",
                hint="the server may be overloaded; raise the slot's TIMEOUT_S if it is just slow",
            ) from None
        except httpx.TransportError as exc:
            raise EngineUnavailable(
                f"cannot reach the TTS server at {self.base_url}: {exc or type(exc).__name__}",
                hint="start the server, or fix the slot's BASE_URL (AVATAR_TTS__HQ__BASE_URL)",
            ) from exc
        if response.status_code >= 400:
            raise error_from_status(response.status_code, response.text, self.base_url)
        return response.content

    def _decode(self, data: bytes) -> PcmAudio:
        if self.response_format == "pcm":
            return PcmAudio.from_s16le(data[: len(data) // 2 * 2], DEFAULT_SAMPLE_RATE)
        try:
            samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
            raise EngineFailed(
                f"the TTS server at {self.base_url} sent audio that cannot be decoded ({exc})",
                hint="check the server supports response_format 'wav'",
                code="engine_bad_response",
            ) from None
        return PcmAudio(np.ascontiguousarray(samples.mean(axis=1), dtype=np.float32), int(rate))

    def _to_output_rate(self, audio: PcmAudio) -> PcmAudio:
        rate = self.capabilities.sample_rate
        if audio.sample_rate == rate or len(audio.samples) == 0:
            return PcmAudio(audio.samples, rate)
        samples = soxr.resample(audio.samples, audio.sample_rate, rate)
        return PcmAudio(np.asarray(samples, dtype=np.float32), rate)


def _error_text(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:200]
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    return text.strip()[:200]


def error_from_status(status: int, text: str, server: str) -> EngineFailed:
    """Map an HTTP error to a typed error that says whether a retry can help."""
    detail = f"the TTS server at {server} answered HTTP {status}: {_error_text(text) or '-'}"
    if status in (401, 403):
        return EngineFailed(
            detail,
            hint="set the slot's API_KEY (AVATAR_TTS__HQ__API_KEY)",
            code="engine_auth",
            retryable=False,
        )
    if status == 404:
        return EngineFailed(
            detail,
            hint="check the slot's BASE_URL points at the server's OpenAI"
            " API (usually ending in /v1) and that it serves /audio/speech",
            code="engine_not_found",
            retryable=False,
        )
    if status in (408, 429) or status >= 500:
        return EngineFailed(
            detail,
            hint="the server is failing or busy; retrying may help",
            code="engine_server_error",
            retryable=True,
        )
    return EngineFailed(
        detail,
        hint="check the slot's MODEL and VOICE against what the server offers",
        code="engine_bad_request",
        retryable=False,
    )
