"""Remote speech-to-text over any OpenAI-compatible ``/v1/audio/transcriptions`` server.

The utterance goes up as a 16 kHz 16-bit WAV in a multipart form. ``verbose_json`` is asked for
first because it carries the language; a server that rejects it (HTTP 400/422) is asked again
with ``json`` and remembered. Every failure becomes a typed :mod:`avatar.errors` error:
unreachable server -> EngineUnavailable, deadline -> EngineTimeout, HTTP error -> EngineFailed
(``retryable`` for 5xx, 408, 429 and broken connections, not for other 4xx). The engine never
retries a failed request itself: the caller owns that policy.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import soundfile as sf
import soxr

from avatar.audio.pcm import PcmAudio
from avatar.engines.base import SttCapabilities, Transcript
from avatar.engines.remote import api_base
from avatar.errors import EngineFailed, EngineTimeout, EngineUnavailable

if TYPE_CHECKING:
    from avatar.models.store import ModelStore
    from avatar.settings import SttSettings

SAMPLE_RATE = 16_000
MIN_AUDIO_S = 0.1

# OpenAI's verbose_json names the language ("english"); some servers send the code ("en").
# Whisper's names (openai/whisper tokenizer.py) plus its aliases.
_WHISPER_NAMES = """
af afrikaans|am amharic|ar arabic|as assamese|az azerbaijani|ba bashkir|be belarusian|bg bulgarian
bn bengali|bo tibetan|br breton|bs bosnian|ca catalan valencian|cs czech|cy welsh|da danish
de german|el greek|en english|es spanish castilian|et estonian|eu basque|fa persian|fi finnish
fo faroese|fr french|gl galician|gu gujarati|ha hausa|haw hawaiian|he hebrew|hi hindi|hr croatian
ht haitian_creole haitian|hu hungarian|hy armenian|id indonesian|is icelandic|it italian
ja japanese|jw javanese|ka georgian|kk kazakh|km khmer|kn kannada|ko korean|la latin
lb luxembourgish letzeburgesch|ln lingala|lo lao|lt lithuanian|lv latvian|mg malagasy|mi maori
mk macedonian|ml malayalam|mn mongolian|mr marathi|ms malay|mt maltese|my myanmar burmese
ne nepali|nl dutch flemish|nn nynorsk|no norwegian|oc occitan|pa punjabi panjabi|pl polish
ps pashto pushto|pt portuguese|ro romanian moldavian moldovan|ru russian|sa sanskrit|sd sindhi
si sinhala sinhalese|sk slovak|sl slovenian|sn shona|so somali|sq albanian|sr serbian
su sundanese|sv swedish|sw swahili|ta tamil|te telugu|tg tajik|th thai|tk turkmen|tl tagalog
tr turkish|tt tatar|uk ukrainian|ur urdu|uz uzbek|vi vietnamese|yi yiddish|yo yoruba
yue cantonese|zh chinese mandarin
"""
_CODES = {
    name.replace("_", " "): words[0]
    for entry in _WHISPER_NAMES.replace("\n", "|").split("|")
    if (words := entry.split())
    for name in words[1:]
}


def language_code(language: str) -> str:
    """An ISO 639 code for a language code, tag or Whisper name: "en-US", "English" -> "en"."""
    tag = language.strip().lower()
    if tag in _CODES:
        return _CODES[tag]
    return tag.replace("_", "-").split("-")[0]


class OpenAISpeechToText:
    """Transcription by a remote OpenAI-compatible server (speaches, vLLM, OpenAI itself)."""

    name = "openai"
    capabilities = SttCapabilities(streaming=False, languages=None, detects_language=True)

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        self.base_url = api_base(base_url)
        self.model = model
        self._timeout = httpx.Timeout(
            connect=connect_timeout_s,
            read=read_timeout_s,
            write=read_timeout_s,
            pool=connect_timeout_s,
        )
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._verbose = True  # until the server rejects verbose_json
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_settings(cls, cfg: SttSettings, models: ModelStore) -> OpenAISpeechToText:
        del models  # the server holds the weights
        if not cfg.base_url:
            raise EngineUnavailable(
                "the openai speech-to-text engine has no server URL",
                hint="set AVATAR_STT__BASE_URL, e.g. http://localhost:8000/v1",
            )
        key = cfg.api_key.get_secret_value() if cfg.api_key else None
        return cls(base_url=cfg.base_url, model=cfg.model, api_key=key)

    @property
    def loaded(self) -> bool:
        return True

    def load(self) -> None:
        """Nothing to load: the server holds the weights."""

    def unload(self) -> None:
        """Nothing to free; pooled connections close in :meth:`aclose`."""

    async def aclose(self) -> None:
        """Close pooled connections (call at shutdown)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def transcribe(
        self, audio: PcmAudio, *, language: str | None = None, likely_language: str | None = None
    ) -> Transcript:
        """Audio shorter than 0.1 s gives an empty transcript without a request."""
        lang = language_code(language) if language else None
        if audio.duration_s < MIN_AUDIO_S:
            return Transcript("", lang, audio.duration_s, no_speech_probability=1.0)
        wav = _wav_bytes(audio)
        if self._verbose:
            response = await self._post(wav, lang, "verbose_json")
            if response.status_code in (400, 422):
                fallback = await self._post(wav, lang, "json")
                if fallback.status_code < 400:
                    self._verbose = False
                    response = fallback
        else:
            response = await self._post(wav, lang, "json")
        if response.status_code >= 400:
            raise self._status_error(response)
        return self._parse(response, lang, audio.duration_s)

    def _http(self) -> httpx.AsyncClient:
        """One pooled client per event loop (connections are bound to the loop that made them)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(timeout=self._timeout)
            self._client_loop = loop
        return self._client

    async def _post(self, wav: bytes, language: str | None, fmt: str) -> httpx.Response:
        data = {"model": self.model, "response_format": fmt}
        if language:
            data["language"] = language
        url = f"{self.base_url}/audio/transcriptions"
        try:
            return await self._http().post(
                url,
                data=data,
                files={"file": ("audio.wav", wav, "audio/wav")},
                headers=self._headers,
            )
        except httpx.TimeoutException as exc:
            phase = "connect" if isinstance(exc, httpx.ConnectTimeout) else "reply"
            raise EngineTimeout(
                f"the speech-to-text server at {self.base_url} did not answer in time"
                f" ({phase} deadline)",
                hint="check that the server is up and not overloaded",
            ) from exc
        except httpx.ConnectError as exc:
            raise EngineUnavailable(
                f"cannot reach the speech-to-text server at {self.base_url}: {exc}",
                hint="start the server, or fix AVATAR_STT__BASE_URL",
            ) from exc
        except httpx.TransportError as exc:
            raise EngineFailed(
                f"the connection to the speech-to-text server at {self.base_url} broke: {exc}",
                hint="the server may have crashed or restarted; retrying may help",
                code="engine_stream_broken",
                retryable=True,
            ) from exc

    def _status_error(self, response: httpx.Response) -> EngineFailed:
        status = response.status_code
        detail = (
            f"the speech-to-text server at {self.base_url} answered HTTP {status}:"
            f" {_error_text(response) or 'no details'}"
        )
        if status in (401, 403):
            hint, code = "set AVATAR_STT__API_KEY to a key this server accepts", "engine_auth"
        elif status == 404:
            hint = (
                f"check AVATAR_STT__MODEL ({self.model!r}) and that AVATAR_STT__BASE_URL points"
                " at the server's OpenAI API (usually ending in /v1)"
            )
            code = "engine_not_found"
        elif status >= 500 or status in (408, 429):
            hint, code = "the server failed or is busy; retrying may help", "engine_server_error"
        else:
            hint, code = "the server rejected the request", "engine_bad_request"
        retryable = status >= 500 or status in (408, 429)
        return EngineFailed(detail, hint=hint, code=code, retryable=retryable)

    def _parse(self, response: httpx.Response, language: str | None, duration: float) -> Transcript:
        try:
            body = response.json()
            text = body["text"]
        except (ValueError, KeyError, TypeError):
            body, text = None, None
        if not isinstance(text, str):
            raise EngineFailed(
                f"the speech-to-text server at {self.base_url} sent a reply without text",
                hint="check that AVATAR_STT__BASE_URL points at an OpenAI-compatible server",
                code="engine_bad_response",
            )
        detected = body.get("language") if isinstance(body, dict) else None
        lang = language or (language_code(detected) if isinstance(detected, str) else None)
        return Transcript(text.strip(), lang, duration, _no_speech(body, text))


def _no_speech(body: dict[str, Any], text: str) -> float:
    """Mean ``no_speech_prob`` of the verbose segments; else 1.0 without text, 0.0 with."""
    segments = body.get("segments")
    probs = [
        float(s["no_speech_prob"])
        for s in (segments if isinstance(segments, list) else [])
        if isinstance(s, dict) and isinstance(s.get("no_speech_prob"), int | float)
    ]
    if probs:
        return float(np.mean(probs))
    return 0.0 if text.strip() else 1.0


def _error_text(response: httpx.Response) -> str:
    """The message of an error body in the usual dialects (OpenAI, vLLM, FastAPI), else its text."""
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        return response.text.strip()[:200]
    if isinstance(body, dict):
        err = body.get("error")
        for candidate in (
            err.get("message") if isinstance(err, dict) else err,
            body.get("message"),
            body.get("detail"),
        ):
            if isinstance(candidate, str):
                return candidate[:200]
    return response.text.strip()[:200]


def _wav_bytes(audio: PcmAudio) -> bytes:
    samples = np.asarray(audio.samples, dtype=np.float32)
    if audio.sample_rate != SAMPLE_RATE:
        samples = np.asarray(soxr.resample(samples, audio.sample_rate, SAMPLE_RATE), np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()
