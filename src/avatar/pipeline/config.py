"""What the client chose for a voice session, and a change to it (a ``config`` message)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from avatar.pipeline.events import PublicConfig


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """The session's current choices (``VoiceSession.configure`` changes them)."""

    language: str | None = None  # None: detect from speech
    tts_mode: str = "auto"
    voice_profile_id: str | None = None
    system_prompt: str | None = None
    hands_free: bool = True
    backchannel_ms: float = 600.0  # speech shorter than this during a reply does not interrupt
    # How Chinese is written when the language is detected or plain "zh": the UI's zh-TW sends
    # "traditional", so detected Mandarin is answered in Traditional characters.
    chinese_script: str | None = None  # "traditional" | "simplified" | None (Simplified)

    def public(self) -> PublicConfig:
        return PublicConfig(
            language=self.language or "auto",
            tts_mode=self.tts_mode,
            voice_profile_id=self.voice_profile_id,
            hands_free=self.hands_free,
        )


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """Fields to change; ``None`` leaves a field as it is. ``language="auto"`` detects again."""

    language: str | None = None
    tts_mode: str | None = None
    voice_profile_id: str | None = None
    system_prompt: str | None = None
    hands_free: bool | None = None
    chinese_script: str | None = None

    def changes(self) -> dict[str, object]:
        named = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in named.items() if v is not None}
