"""Schemas of the voice-profile API (``/api/voice-profiles``).

The stored audio path and the embedding bytes never leave the server: a profile carries its
audio URL and the embedding's dimension instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from avatar.storage import VoiceProfileRow

PREFIX = "/api/voice-profiles"
NAME_CHARS = 100
TEXT_CHARS = 2000


class QualityWarning(BaseModel):
    """Something to fix before the recording is a good cloning reference."""

    code: str = Field(description="too_quiet, clipping, noisy or transcript_mismatch.")
    message: str
    hint: str = ""


class QualityReport(BaseModel):
    """Measurements of the reference recording (null where they could not be made)."""

    duration_s: float | None = Field(None, description="Length of the stored recording.")
    speech_duration_s: float | None = Field(None, description="Speech found by the VAD.")
    level_dbfs: float | None = Field(None, description="RMS level of the speech, in dBFS.")
    peak: float | None = Field(None, description="Largest absolute sample (0-1).")
    peak_dbfs: float | None = None
    clipping_ratio: float | None = Field(None, description="Share of samples at full scale.")
    noise_floor_dbfs: float | None = Field(None, description="RMS level away from speech.")
    snr_db: float | None = Field(None, description="Speech level over the noise floor.")
    snr_method: str | None = Field(
        None, description="'vad': measured in pauses; 'percentile': quietest tenth of frames."
    )
    transcript: str | None = Field(None, description="What the speech recogniser heard.")
    transcript_language: str | None = None
    transcript_accuracy: float | None = Field(
        None, description="1 - error rate of the transcript against reference_text (0-1)."
    )
    accuracy_unit: Literal["word", "character"] | None = Field(
        None, description="Words, or characters for CJK reference text."
    )
    reference_text_source: Literal["upload", "transcript"] | None = Field(
        None, description="'transcript': no reference_text was given, the transcript is used."
    )


class VoiceProfilePublic(BaseModel):
    """A stored voice profile."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str
    reference_text: str
    sample_rate: int = Field(description="Sample rate of the stored mono WAV.")
    duration_s: float
    engine_status: str = Field(
        description="'cloning_ready': a cloning engine will speak with this voice; "
        "'packaged_voice': no cloning engine is configured, a packaged voice speaks instead."
    )
    quality: QualityReport
    warnings: list[QualityWarning]
    embedding_dimensions: int | None = Field(description="Size of the speaker embedding.")
    audio_url: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: VoiceProfileRow) -> VoiceProfilePublic:
        quality = dict(row.quality or {})
        return cls(
            id=row.id,
            name=row.name,
            description=row.description,
            reference_text=row.reference_text,
            sample_rate=row.sample_rate,
            duration_s=row.duration_s,
            engine_status=row.engine_status,
            quality=QualityReport.model_validate(quality),
            warnings=[QualityWarning.model_validate(w) for w in quality.get("warnings") or []],
            embedding_dimensions=len(row.embedding) // 4 if row.embedding else None,
            audio_url=f"{PREFIX}/{row.id}/audio",
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class VoiceProfilePage(BaseModel):
    """One page of voice profiles, newest first."""

    items: list[VoiceProfilePublic]
    page: int
    page_size: int
    total: int
    pages: int


class VoiceProfileUpdate(BaseModel):
    """Fields to change; omitted (or null) fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=NAME_CHARS)
    description: str | None = Field(None, max_length=TEXT_CHARS)
    reference_text: str | None = Field(
        None,
        max_length=TEXT_CHARS,
        description="Exactly what is said in the recording; the transcript is re-scored.",
    )
