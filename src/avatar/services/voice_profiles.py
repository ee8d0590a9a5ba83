"""Voice-profile use cases: create one from an uploaded recording, read, edit and delete it.

Creating a profile decodes the upload (never trusting its name or type), checks that it holds
3-60 s of speech, measures its quality (levels, noise, how well an ASR transcript matches the
reference text), takes a speaker embedding, and stores the audio as a normalised mono WAV
under a server-made name. Each call owns its transaction; a failed insert removes the file.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from avatar.audio.decode import AudioLimits, decode_audio
from avatar.audio.encode import encode_wav
from avatar.audio.pcm import PcmAudio
from avatar.audio.resample import resample
from avatar.engines.hub import EngineHub
from avatar.engines.vad.segments import speech_segments
from avatar.errors import AudioError, EmptyAudio
from avatar.services import voice_quality
from avatar.services.voices import engine_status
from avatar.storage import (
    AudioStore,
    Conflict,
    Database,
    NewVoiceProfile,
    NotFound,
    Page,
    VoiceProfileRow,
    VoiceProfiles,
    embedding_to_bytes,
)
from avatar.storage.inputs import check_name

MAX_UPLOAD_BYTES: Final = 25 * 1024 * 1024
MIN_SPEECH_S: Final = 3.0
MAX_AUDIO_S: Final = 60.0
MAX_STORED_RATE: Final = 48_000
UPLOAD_LIMITS: Final = AudioLimits(max_bytes=MAX_UPLOAD_BYTES, max_duration_s=MAX_AUDIO_S)


@dataclass(frozen=True, slots=True)
class ProfileUpload:
    """A new profile as the client sent it; ``data`` is the raw audio file."""

    name: str
    data: bytes
    description: str = ""
    reference_text: str = ""


@dataclass(frozen=True, slots=True)
class _Measured:
    report: dict[str, Any]
    for_stt: PcmAudio
    speech: PcmAudio  # the speech spans joined, for the speaker embedding


@dataclass(frozen=True, slots=True)
class Analysis:
    quality: dict[str, Any]
    embedding: bytes | None
    reference_text: str  # as uploaded, or the transcript when none was given


class VoiceProfileService:
    """The voice-profile use cases over the database, the audio store and the engines."""

    def __init__(self, db: Database, audio: AudioStore, hub: EngineHub) -> None:
        self.db, self.audio, self.hub = db, audio, hub

    # --- create ------------------------------------------------------------------------------

    async def create(self, upload: ProfileUpload) -> VoiceProfileRow:
        """Check, analyse and store a new profile; 409 before any work if the name is taken."""
        name = check_name(upload.name)
        await self._ensure_name_free(name)
        audio = await asyncio.to_thread(_normalise, upload.data)
        analysis = await self.analyse(audio, upload.reference_text)
        rel = await asyncio.to_thread(self._store, audio)
        profile = NewVoiceProfile(
            name=name,
            audio=rel,
            sample_rate=audio.sample_rate,
            duration_s=round(audio.duration_s, 3),
            description=upload.description,
            reference_text=analysis.reference_text,
            quality=analysis.quality,
            embedding=analysis.embedding,
            engine_status=engine_status(self.hub),
        )
        try:
            async with self.db.write() as session:
                return await VoiceProfiles(session).create(profile)
        except Exception:  # not on cancellation: the row may still commit and name the file
            await asyncio.to_thread(self.audio.delete, rel)
            raise

    def _store(self, audio: PcmAudio) -> str:
        return self.audio.save("profiles", encode_wav(audio), ".wav")

    async def _ensure_name_free(self, name: str) -> None:
        try:
            async with self.db.read() as session:
                await VoiceProfiles(session).get_by_name(name)
        except NotFound:
            return
        raise Conflict(
            f"a voice profile named {name!r} already exists",
            hint="choose another name, or update that profile",
        )

    async def analyse(self, audio: PcmAudio, reference_text: str) -> Analysis:
        """Speech check (422 under ``MIN_SPEECH_S``), quality report and speaker embedding.

        Without a ``reference_text`` the transcript stands in for it (and is not scored).
        """
        stt = self.hub.stt
        measured = await asyncio.to_thread(self._measure, audio, stt.capabilities.sample_rate)
        heard = await stt.transcribe(measured.for_stt)
        given = reference_text.strip()
        report = measured.report
        report.update(
            transcript=heard.text.strip(),
            transcript_language=heard.language,
            reference_text_source="upload" if given else "transcript",
        )
        report = await asyncio.to_thread(voice_quality.with_reference, report, given)
        vector = await self.hub.speaker.embed(measured.speech)
        embedding = embedding_to_bytes(vector.astype(float).tolist())
        return Analysis(report, embedding, given or report["transcript"])

    def _measure(self, audio: PcmAudio, stt_rate: int) -> _Measured:
        """Blocking: VAD spans, the speech check and the signal report."""
        spans = speech_segments(audio, self.hub.new_vad())
        speech_s = round(sum(end - start for start, end in spans), 3)
        _require_speech(speech_s)
        report = voice_quality.signal_report(audio, spans)
        report.update(duration_s=round(audio.duration_s, 3), speech_duration_s=speech_s)
        rate = audio.sample_rate
        voiced = [audio.samples[int(a * rate) : int(b * rate)] for a, b in spans]
        speech = PcmAudio(np.concatenate(voiced).astype(np.float32), rate)
        return _Measured(report, resample(audio, stt_rate), speech)

    # --- read, edit, delete ------------------------------------------------------------------

    async def list_page(self, page: int, page_size: int) -> Page[VoiceProfileRow]:
        async with self.db.read() as session:
            return await VoiceProfiles(session).list_profiles(page, page_size)

    async def get(self, profile_id: str) -> VoiceProfileRow:
        async with self.db.read() as session:
            return await VoiceProfiles(session).get(profile_id)

    async def update(
        self,
        profile_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        reference_text: str | None = None,
    ) -> VoiceProfileRow:
        """Change text fields; a new ``reference_text`` re-scores the stored transcript."""
        async with self.db.write() as session:
            repo = VoiceProfiles(session)
            row = await repo.update(
                profile_id, name=name, description=description, reference_text=reference_text
            )
            if reference_text is not None:
                quality = {**(row.quality or {}), "reference_text_source": "upload"}
                # Scoring is O(words^2) in Python: up to ~1 s for 2,000 CJK characters.
                quality = await asyncio.to_thread(
                    voice_quality.with_reference, quality, reference_text
                )
                row = await repo.set_analysis(
                    profile_id, engine_status=row.engine_status, quality=quality
                )
            return row

    async def delete(self, profile_id: str) -> None:
        """Delete the row first (sessions stop using it), then its audio file."""
        async with self.db.write() as session:
            rel = await VoiceProfiles(session).delete(profile_id)
        await asyncio.to_thread(self.audio.delete, rel)

    async def audio_file(self, profile_id: str) -> Path:
        """The stored WAV of a profile (NotFound if the row or the file is gone)."""
        row = await self.get(profile_id)
        return await asyncio.to_thread(self.audio.open_path, row.audio)


def _normalise(data: bytes) -> PcmAudio:
    """Decode any accepted format to mono at its own rate, at most ``MAX_STORED_RATE``."""
    audio = decode_audio(data, limits=UPLOAD_LIMITS, target_rate=None)
    return resample(audio, MAX_STORED_RATE) if audio.sample_rate > MAX_STORED_RATE else audio


def _require_speech(speech_s: float) -> None:
    if speech_s == 0:
        raise EmptyAudio(
            "no speech was found in the recording (it is silence or noise)",
            hint=f"upload {MIN_SPEECH_S:g}-{MAX_AUDIO_S:g} s of clear speech",
        )
    if speech_s < MIN_SPEECH_S:
        raise AudioError(
            f"the recording holds {speech_s:.1f} s of speech; a voice profile needs at least"
            f" {MIN_SPEECH_S:g} s",
            code="speech_too_short",
            hint=f"record {MIN_SPEECH_S:g}-{MAX_AUDIO_S:g} s of speech (10-20 s works best)",
        )
