"""One settings tree for the whole server (``AVATAR_`` prefix, ``__`` nesting, optional ``.env``).

Built once by :func:`load_settings` and passed through the app factory and the CLI; nothing reads
the environment at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from avatar.errors import ConfigError


class ServerSettings(BaseModel):
    """Where and how `avatar serve` listens."""

    host: str = Field("127.0.0.1", description="Bind address; loopback by default.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")
    preload: bool = Field(True, description="Load the configured models before serving.")
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "localhost", "[::1]"],
        description="Host header allowlist (DNS-rebinding guard); '*' disables it.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Extra browser origins for the WebSocket and CORS (same-origin always).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Proxy addresses whose X-Forwarded-For/-Proto are believed; none by default.",
    )
    limit_concurrency: int = Field(
        900, ge=16, description="Open connections and tasks at most; beyond, new ones get 503."
    )


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "avatar" / "models"


class ModelsSettings(BaseModel):
    """Where joined/verified model files live and whether hub downloads are allowed."""

    cache_dir: Path = Field(
        default_factory=lambda: default_cache_dir(),
        description="Joined model files (a cache, shared by every data folder):"
        " $XDG_CACHE_HOME/avatar/models or ~/.cache/avatar/models.",
    )
    allow_downloads: bool = Field(
        False, description="Allow fetching hub models at run time (needs internet)."
    )


class VadSettings(BaseModel):
    """Voice activity detection and endpointing."""

    engine: str = Field("silero", description="Registry name of the VAD engine.")
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Speech probability threshold.")
    min_speech_ms: int = Field(250, ge=0, description="Shortest speech that counts as a turn.")
    silence_hangover_ms: int = Field(500, ge=0, description="Silence that ends an utterance.")
    max_utterance_ms: int = Field(30_000, ge=1000, description="Longest utterance before cut.")
    pre_roll_ms: int = Field(
        1000,
        ge=0,
        le=5000,
        description="Audio kept from before the speech was confirmed (short first words).",
    )


class SttSettings(BaseModel):
    """Speech-to-text engine."""

    engine: str = Field("faster-whisper", description="Registry name of the STT engine.")
    model: str = Field("whisper-base", description="Catalog name, local path or hub id.")
    language: str | None = Field(None, description="Force a language; None auto-detects.")
    device: str = Field("cpu", description="auto, cpu, cuda or cuda:N.")
    compute_type: str = Field("int8", description="CTranslate2 compute type.")
    threads: int = Field(2, ge=1, description="CPU threads for inference.")
    base_url: str | None = Field(None, description="Remote engine: OpenAI-compatible base URL.")
    api_key: SecretStr | None = Field(None, description="Remote engine: API key.")


class LlmSettings(BaseModel):
    """Chat model engine."""

    engine: str = Field("llama-cpp", description="Registry name of the LLM engine.")
    model: str = Field("qwen2.5-0.5b-instruct", description="Catalog name, path or remote model.")
    threads: int = Field(2, ge=1, description="CPU threads for local inference.")
    context_tokens: int = Field(4096, ge=256, description="Context window for local models.")
    gpu_layers: int = Field(0, ge=-1, description="Layers offloaded to the GPU (-1: all).")
    prompt_cache_mb: int = Field(
        256,
        ge=0,
        description="Local models: RAM for prompt states kept between turns, so sessions taking"
        " turns do not re-read their whole history (0: off).",
    )
    max_tokens: int = Field(200, ge=1, description="Longest reply in tokens.")
    temperature: float = Field(
        0.2, ge=0.0, le=2.0, description="Sampling temperature; low keeps small models factual."
    )
    system_prompt: str = Field(
        "You are AVATAR, a helpful voice assistant. Answer briefly in plain spoken sentences, "
        "in the language the user speaks.",
        description="Default system prompt.",
    )
    base_url: str | None = Field(None, description="Remote engine: OpenAI-compatible base URL.")
    api_key: SecretStr | None = Field(None, description="Remote engine: API key.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Remote: TCP/TLS connect deadline.")
    first_token_timeout_s: float = Field(20.0, gt=0, description="Remote: wait for first token.")
    read_timeout_s: float = Field(10.0, gt=0, description="Remote: gap allowed between chunks.")


class TtsSlotSettings(BaseModel):
    """One TTS engine slot (``fast`` or ``hq``)."""

    engine: str = Field(..., description="Registry name of the TTS engine.")
    model: str | None = Field(None, description="Catalog name, path or remote model/voice.")
    voice: str | None = Field(None, description="Engine voice name.")
    device: str = Field("cpu", description="auto, cpu, cuda or cuda:N.")
    base_url: str | None = Field(None, description="Remote engine: OpenAI-compatible base URL.")
    api_key: SecretStr | None = Field(None, description="Remote engine: API key.")
    timeout_s: float = Field(30.0, gt=0, description="Remote engine: request deadline.")


class TtsSettings(BaseModel):
    """Text-to-speech: two slots and the mode that picks between them."""

    mode: Literal["fast", "hq", "auto"] = Field("auto", description="Default mode for replies.")
    fast: TtsSlotSettings = Field(
        default_factory=lambda: TtsSlotSettings(engine="embedded", model="piper-joe")
    )
    hq: TtsSlotSettings | None = Field(None, description="High-quality engine; unset by default.")
    hq_latency_budget_ms: int = Field(
        1500, ge=0, description="auto uses hq only while its first-audio latency stays under this."
    )


class GpuSettings(BaseModel):
    """GPU placement and admission (see docs/GPU.md); ignored where no GPU is found."""

    sessions_per_gpu: int = Field(8, ge=1, description="Voice sessions admitted per GPU.")
    hq_max_load: float = Field(
        0.75, gt=0, le=1, description="Above this GPU session load, auto TTS falls back to fast."
    )
    margin_mb: float = Field(1024.0, ge=0, description="VRAM kept free on each card (MB).")
    margin_fraction: float = Field(
        0.05, ge=0, lt=1, description="VRAM kept free on each card (fraction; larger wins)."
    )


class SpeakerSettings(BaseModel):
    """Speaker encoder used by voice profiles."""

    engine: str = Field("voicefilter", description="Registry name of the speaker encoder.")


class Settings(BaseSettings):
    """Every setting of the AVATAR server; environment variables use the ``AVATAR_`` prefix."""

    model_config = SettingsConfigDict(
        env_prefix="AVATAR_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    data_dir: Path = Field(Path("./data"), description="All state lives under this folder.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default SQLite in <data_dir>/avatar.db."
    )
    redis_url: str | None = Field(None, description="Redis for shared rate limits (scale-out).")
    api_token: SecretStr | None = Field(
        None, description="Bearer token; a random one is made at start when unset."
    )
    open_reads: bool = Field(False, description="Allow reads without the token (original API).")
    max_sessions: int = Field(16, ge=1, description="Concurrent voice sessions, all clients.")
    max_sessions_per_client: int = Field(4, ge=1, description="Concurrent sessions per client.")
    session_idle_timeout_s: float = Field(
        300.0, gt=0, description="Close a voice session after this long without a message."
    )
    send_deadline_s: float = Field(
        10.0, gt=0, description="Close a client whose socket takes longer than this to send."
    )
    pipeline: Literal["streaming", "sequential"] = Field(
        "streaming",
        description="streaming speaks while the reply is written; sequential (the original"
        " design, kept as a benchmark baseline) waits for the whole reply, then the whole audio.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    server: ServerSettings = Field(default_factory=ServerSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    vad: VadSettings = Field(default_factory=VadSettings)
    stt: SttSettings = Field(default_factory=SttSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    tts: TtsSettings = Field(default_factory=TtsSettings)
    speaker: SpeakerSettings = Field(default_factory=SpeakerSettings)
    gpu: GpuSettings = Field(default_factory=GpuSettings)

    @field_validator("api_token")
    @classmethod
    def _token_strong_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (use `avatar token` to make one)")
        return value

    @model_validator(mode="after")
    def _remote_engines_need_urls(self) -> Settings:
        if self.llm.engine == "openai" and not self.llm.base_url:
            raise ValueError("llm.engine=openai needs llm.base_url (AVATAR_LLM__BASE_URL)")
        return self

    @property
    def model_cache_dir(self) -> Path:
        return self.models.cache_dir

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'avatar.db'}"

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data with every secret replaced by ``***``."""
        return _redact(self.model_dump(mode="python"))


def _redact(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "***"
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation errors into one readable :class:`ConfigError`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = "AVATAR_" + "__".join(str(p) for p in err["loc"]).upper()
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError("invalid settings:\n" + "\n".join(lines)) from None
