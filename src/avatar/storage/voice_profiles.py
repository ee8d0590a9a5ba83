"""Voice profiles: reference voices (audio file + transcript + speaker embedding)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from avatar.storage.common import Page, check_paging, clean_json, clean_text, utcnow
from avatar.storage.errors import Conflict, NotFound
from avatar.storage.inputs import NewVoiceProfile, check_name, check_profile, check_status
from avatar.storage.tables import VoiceProfileRow


class VoiceProfiles:
    """Repository of voice profiles; the caller owns the transaction (``db.write()``)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _ensure_name_free(self, name: str, own_id: str | None = None) -> None:
        query = select(VoiceProfileRow.id).where(VoiceProfileRow.name == name)
        holder = (await self.session.execute(query)).scalar_one_or_none()
        if holder is not None and holder != own_id:
            raise Conflict(
                f"a voice profile named {name!r} already exists", hint="choose another name"
            )

    async def _flush_unique(self, name: str) -> None:
        try:
            await self.session.flush()
        except IntegrityError as exc:  # a concurrent writer took the name after our check
            raise Conflict(f"a voice profile named {name!r} already exists") from exc

    async def create(self, profile: NewVoiceProfile) -> VoiceProfileRow:
        """Store a new profile; a name in use is a :class:`Conflict`."""
        name = check_name(profile.name)
        check_profile(profile)
        await self._ensure_name_free(name)
        now = utcnow()
        row = VoiceProfileRow(
            id=uuid.uuid4().hex,
            name=name,
            description=clean_text(profile.description),
            reference_text=clean_text(profile.reference_text),
            audio=profile.audio,
            sample_rate=profile.sample_rate,
            duration_s=profile.duration_s,
            quality=clean_json(profile.quality),
            embedding=profile.embedding,
            engine_status=profile.engine_status,
            created_at=now,
            updated_at=now,
        )
        self.session.add(row)
        await self._flush_unique(name)
        return row

    async def get(self, profile_id: str) -> VoiceProfileRow:
        row = await self.session.get(VoiceProfileRow, profile_id)
        if row is None:
            raise NotFound(f"voice profile {profile_id!r} not found")
        return row

    async def get_by_name(self, name: str) -> VoiceProfileRow:
        query = select(VoiceProfileRow).where(VoiceProfileRow.name == name.strip())
        row = (await self.session.execute(query)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"voice profile named {name!r} not found")
        return row

    async def list_profiles(self, page: int = 1, page_size: int = 50) -> Page[VoiceProfileRow]:
        """Profiles, newest first."""
        offset = check_paging(page, page_size)
        total = (await self.session.execute(select(func.count(VoiceProfileRow.id)))).scalar_one()
        query = (
            select(VoiceProfileRow)
            .order_by(VoiceProfileRow.created_at.desc(), VoiceProfileRow.id.desc())
            .offset(offset)
            .limit(page_size)
        )
        items = list((await self.session.execute(query)).scalars())
        return Page(items=items, page=page, page_size=page_size, total=total)

    async def update(
        self,
        profile_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        reference_text: str | None = None,
    ) -> VoiceProfileRow:
        """Change the given text fields (``None`` leaves a field as it is)."""
        row = await self.get(profile_id)
        if name is not None:
            name = check_name(name)
            await self._ensure_name_free(name, own_id=profile_id)
            row.name = name
        if description is not None:
            row.description = clean_text(description)
        if reference_text is not None:
            row.reference_text = clean_text(reference_text)
        row.updated_at = utcnow()
        await self._flush_unique(row.name)
        return row

    async def set_analysis(
        self,
        profile_id: str,
        *,
        engine_status: str,
        quality: dict[str, Any] | None = None,
        embedding: bytes | None = None,
    ) -> VoiceProfileRow:
        """Record the result of analysing the reference audio (quality, embedding, status)."""
        row = await self.get(profile_id)
        row.engine_status = check_status(engine_status)
        if quality is not None:
            row.quality = clean_json(quality)
        if embedding is not None:
            row.embedding = embedding
        row.updated_at = utcnow()
        await self.session.flush()
        return row

    async def delete(self, profile_id: str) -> str:
        """Delete a profile (sessions using it keep going without); returns its audio path."""
        row = await self.get(profile_id)
        audio = row.audio
        await self.session.delete(row)
        await self.session.flush()
        return audio
