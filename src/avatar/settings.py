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
    warm_up: bool = Field(
        True,
        description="After preloading, take the engines once through a spoken turn so the"
        " first question is answered as fast as the rest (a second or two at start).",
    )
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
    loud_within_db: float = Field(
        30.0,
        ge=0,
        le=90,
        description=(
            "Trailing silence counts from the last frame within this many dB of the utterance's"
            " loudest (the VAD's release lags the sound's end by ~60 ms); 0: from the release."
        ),
    )


class TurnSettings(BaseModel):
    """End of turn: when a pause ends the user's turn (see avatar.pipeline.end_of_turn)."""

    engine: str = Field(
        "smart-turn", description="Registry name of the acoustic end-of-turn model ('' for none)."
    )
    model: str = Field("smart-turn-v3.2", description="Catalog name or local ONNX path.")
    threads: int = Field(1, ge=1, description="CPU threads for the acoustic model.")
    use_text: bool = Field(
        True, description="Also ask the chat model how likely its end-of-turn token is next."
    )
    # The floor under a decision. With the work started at the first quiet frame, the models'
    # answer is in ~200 ms after the sound's end, so this floor, not the CPU, now decides how
    # short a pause can end a turn: 300 ms keeps "Hello, | can you hear me?" (a 260 ms comma
    # pause after a whole greeting) one turn, and costs nothing at the median since the first
    # audio is ready ~430 ms after the sound (docs/BENCHMARKS.md, round 13).
    min_silence_ms: int = Field(
        300, ge=0, description="Silence before the end-of-turn models may end the turn."
    )
    # The transcript and the model's reading of it take ~200 ms on two cores, the reply's first
    # audio ~450: begun at the first quiet frame after the sound (counted from its end, before
    # the VAD's late release), they run while the pause is still too short to end the turn. A
    # person who goes on speaking costs work the idle CPU did meanwhile, stopped at the next
    # loud frame: ~1.5 held replies dropped a question, 86 ms of CPU in all for 20 questions
    # (docs/BENCHMARKS.md, round 13).
    start_silence_ms: int = Field(
        32,
        ge=0,
        description="Silence after the sound's end at which the held reply starts and the models"
        " are asked (capped at min_silence_ms); their answer ends the turn no sooner than"
        " min_silence_ms.",
    )
    # Chosen on the hesitation set (docs/BENCHMARKS.md, "End of turn"): on our synthetic
    # voices smart-turn judged most first halves complete, so by default only the text decides:
    # the chat model's P(the sentence ends) after the words without their final punctuation.
    complete_threshold: float = Field(
        0.25, gt=0.0, lt=1.0, description="Fused probability at or above which the turn ends."
    )
    acoustic_weight: float = Field(
        0.0, ge=0.0, le=1.0, description="Weight of the acoustic probability (text: 1 - this)."
    )
    # 1.0 s: a 700 ms pause mid-sentence measured 672-800 ms of silence (counted from the
    # voice's end; 608-800 from the VAD's release) on the 42 paused questions of the hesitation
    # set, 200 ms inside it; a finished question the text model misreads as unfinished
    # (requests such as "Can you tell me a short joke", ~20 % of that set's whole questions) is
    # still answered in about 1.1 s, within the 1.2 s p95 budget.
    fallback_silence_ms: int = Field(
        1000, ge=0, description="Silence that ends a turn the models judged incomplete."
    )
    starvation_ms: int = Field(
        1000, ge=100, description="A client silent this long after speech has ended its turn."
    )
    speculate: bool = Field(
        True,
        description="At the first short silence, start the reply (held back, dropped if the"
        " user goes on); off: only the transcript is made early.",
    )

    @model_validator(mode="after")
    def _fallback_after_first_look(self) -> TurnSettings:
        if self.fallback_silence_ms < self.min_silence_ms:
            raise ValueError("fallback_silence_ms must not be shorter than min_silence_ms")
        return self


class SttSettings(BaseModel):
    """Speech-to-text engine."""

    engine: str = Field("faster-whisper", description="Registry name of the STT engine.")
    model: str = Field("whisper-base", description="Catalog name, local path or hub id.")
    language: str | None = Field(None, description="Force a language; None auto-detects.")
    device: str = Field("cpu", description="auto, cpu, cuda or cuda:N.")
    compute_type: str = Field("int8", description="CTranslate2 compute type.")
    threads: int = Field(2, ge=1, description="CPU threads for inference.")
    # On two cores whisper-base's trimmed decode of a question ran faster on one thread than on
    # two (English p50 ~213 vs ~255 ms, Mandarin's beam 404 vs 567); the 30 s padded pass runs
    # faster on two (972 vs 1,619 ms): docs/BENCHMARKS.md, round 10.
    trimmed_threads: int | None = Field(
        1,
        ge=1,
        description="faster-whisper on CPU: threads for the trimmed decode of an utterance"
        " (a second instance of the model, ~110 MB of RAM); None: as threads.",
    )
    trim: bool = Field(
        True,
        description="faster-whisper: encode the utterance's own length (+1 s) instead of 30 s;"
        " a guard falls back to the padded decode on loops, overlong or silent results.",
    )
    base_url: str | None = Field(None, description="Remote engine: OpenAI-compatible base URL.")
    api_key: SecretStr | None = Field(None, description="Remote engine: API key.")


class LlmSettings(BaseModel):
    """Chat model engine."""

    engine: str = Field("llama-cpp", description="Registry name of the LLM engine.")
    model: str = Field(
        "qwen2.5-coder-0.5b-instruct", description="Catalog name, path or remote model."
    )
    # A voice reply takes turns with TTS (engines/cpu_turns.py), so it has the cores while it
    # decodes: two threads. Other generations (REST, text chat) decode on ``threads``, beside
    # whatever else runs.
    threads: int = Field(1, ge=1, description="CPU threads for local inference (decoding).")
    batch_threads: int | None = Field(
        2, ge=1, description="Local models: threads reading the prompt (None: as threads)."
    )
    reply_threads: int | None = Field(
        2,
        ge=1,
        description="Local models: threads decoding a voice reply, which takes turns with TTS"
        " for the CPU (None: as threads).",
    )
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

    @model_validator(mode="after")
    def _base_url_needs_remote_engine(self) -> TtsSlotSettings:
        if self.base_url and self.engine != "openai":
            raise ValueError(
                f"base_url needs the remote engine (engine is {self.engine!r}):"
                " also set AVATAR_TTS__<SLOT>__ENGINE=openai"
            )
        return self

    voice: str | None = Field(None, description="Engine voice name.")
    device: str = Field("cpu", description="auto, cpu, cuda or cuda:N.")
    threads: int | None = Field(
        None, ge=1, description="Piper on CPU: inference threads (None: one per core)."
    )
    base_url: str | None = Field(None, description="Remote engine: OpenAI-compatible base URL.")
    api_key: SecretStr | None = Field(None, description="Remote engine: API key.")
    timeout_s: float = Field(30.0, gt=0, description="Remote engine: request deadline.")


# Piper on two threads: a voice reply's LLM waits while it speaks (engines/cpu_turns.py).
FAST_DEFAULT: dict[str, Any] = {"engine": "embedded", "model": "piper-joe", "threads": 2}


class TtsSettings(BaseModel):
    """Text-to-speech: two slots and the mode that picks between them."""

    mode: Literal["fast", "hq", "auto"] = Field("auto", description="Default mode for replies.")
    fast: TtsSlotSettings = Field(default_factory=lambda: TtsSlotSettings(**FAST_DEFAULT))
    hq: TtsSlotSettings | None = Field(None, description="High-quality engine; unset by default.")
    hq_latency_budget_ms: int = Field(
        1500, ge=0, description="auto uses hq only while its first-audio latency stays under this."
    )

    @field_validator("fast", mode="before")
    @classmethod
    def _fast_fields_over_default(cls, value: Any) -> Any:
        # AVATAR_TTS__FAST__VOICE alone changes that field of the default slot, instead of
        # replacing the slot with one that has no engine.
        if isinstance(value, dict) and "engine" not in value:
            return {**FAST_DEFAULT, **value}
        return value


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


def _limit(default: str, what: str) -> Any:
    return Field(default, description=f"{what}; 'N/second|minute|hour', '' for no limit.")


class RateLimitSettings(BaseModel):
    """Requests per client and route. A client is its API token when it presents the right one
    (so people behind one proxy or NAT do not share a budget), else its address.

    The defaults suit a household or a small team sharing one server: far above what a person
    or the web UI sends, low enough to stop a runaway script.
    """

    health: str = _limit("600/minute", "GET /health (monitors poll it)")
    chat: str = _limit("120/minute", "POST /v1/chat/completions")
    transcription: str = _limit("120/minute", "POST /v1/audio/transcriptions")
    speech: str = _limit("120/minute", "POST /v1/audio/speech")
    models: str = _limit("600/minute", "GET /v1/models and /v1/models/{id}")
    reads: str = _limit("600/minute", "reading history, voice profiles and their audio")
    search: str = _limit("120/minute", "history search and statistics")
    system: str = _limit("120/minute", "system info and model status")
    writes: str = _limit("120/minute", "changing or deleting profiles and conversations")
    profile_create: str = _limit("30/minute", "creating voice profiles (uploads, analysis)")
    profile_test: str = _limit("30/minute", "test synthesis of a voice profile")
    export: str = _limit("20/minute", "conversation exports")
    admin: str = _limit("10/minute", "model preload and warm-up")

    @field_validator("*")
    @classmethod
    def _valid_spec(cls, value: str) -> str:
        from limits import parse_many  # imported here: settings load before the API does

        if value.strip():
            try:
                parse_many(value)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not a rate limit: write e.g. '120/minute' or '' for none"
                ) from None
        return value.strip()


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
    turn: TurnSettings = Field(default_factory=TurnSettings)
    stt: SttSettings = Field(default_factory=SttSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    tts: TtsSettings = Field(default_factory=TtsSettings)
    speaker: SpeakerSettings = Field(default_factory=SpeakerSettings)
    gpu: GpuSettings = Field(default_factory=GpuSettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)

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
