"""What the OpenAI-compatible remote engines (LLM, STT, TTS) share."""

from __future__ import annotations

from urllib.parse import urlsplit


def api_base(base_url: str) -> str:
    """``http://host:8000`` and ``http://host:8000/v1`` both mean ``http://host:8000/v1``."""
    url = base_url.rstrip("/")
    return url + "/v1" if urlsplit(url).path in ("", "/") else url
