"""Settings: AVATAR_ prefix, __ nesting, validation messages, redaction."""

from __future__ import annotations

import pytest

from avatar.errors import ConfigError
from avatar.settings import load_settings


def test_defaults_are_the_embedded_cpu_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.server.host, s.server.port) == ("127.0.0.1", 8000)
    assert s.stt.engine == "faster-whisper" and s.llm.engine == "llama-cpp"
    assert s.tts.fast.engine == "embedded" and s.tts.hq is None


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_LLM__MAX_TOKENS", "42")
    monkeypatch.setenv("AVATAR_TTS__HQ__ENGINE", "openai")
    monkeypatch.setenv("AVATAR_TTS__HQ__BASE_URL", "http://127.0.0.1:9/v1")
    s = load_settings()
    assert s.llm.max_tokens == 42
    assert s.tts.hq is not None and s.tts.hq.engine == "openai"


def test_invalid_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_SERVER__PORT", "99999")
    monkeypatch.setenv("AVATAR_API_TOKEN", "short")
    monkeypatch.setenv("AVATAR_VAD__LOUD_WITHIN_DB", "-5")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert "AVATAR_SERVER__PORT" in text and "AVATAR_API_TOKEN" in text
    assert "AVATAR_VAD__LOUD_WITHIN_DB" in text


def test_remote_llm_needs_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_LLM__ENGINE", "openai")
    with pytest.raises(ConfigError, match="base_url"):
        load_settings()


def test_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_API_TOKEN", "s3cret-token-abcdefghijkl")
    monkeypatch.setenv("AVATAR_LLM__API_KEY", "sk-live-123")
    s = load_settings()
    dumped = repr(s.redacted())
    assert "s3cret" not in dumped and "sk-live" not in dumped
    assert s.redacted()["api_token"] == "***"
