"""One assistant reply: its generation id, what was sent, what the user actually heard.

"Heard" follows the client's reported playback position when it sends one (``playback``
messages), else the audio sent. Within a partly heard chunk the text is cut in proportion to the
audio played (by words, or by characters for scripts without spaces).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from enum import Enum

from avatar.audio.pcm import PcmAudio

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


@dataclass(slots=True)
class SpokenChunk:
    """A piece of reply text and the length of the audio sent for it so far."""

    text: str
    duration_ms: float


class TurnState(Enum):
    """Where a reply is: only a ``REPLYING`` turn can be cancelled."""

    REPLYING = "replying"  # transcribing, generating, speaking
    GENERATED = "generated"  # fully generated and sent; only storing remains
    INTERRUPTED = "interrupted"  # cut off by the user, a new turn or the session's end


@dataclass(slots=True)
class Turn:
    """An assistant reply in flight; ``generation`` tags its output so stale frames are dropped."""

    generation: int
    t0: float = 0.0  # clock time of the end of the user's speech; voice-to-voice counts from here
    user_text: str = ""
    language: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    reply_text: str = ""
    chunks: list[SpokenChunk] = field(default_factory=list)
    played_ms: float | None = None
    first_audio_at: float | None = None  # clock time the first audio was sent
    stored_index: int | None = None  # the turn's index in storage, once recorded
    state: TurnState = TurnState.REPLYING
    tts_mode: str | None = None
    user_audio: PcmAudio | None = None  # the utterance (None for typed text)
    reply_audio: list[tuple[bytes, int]] = field(default_factory=list)  # (PCM s16le, rate) sent
    metrics: dict[str, float | str | None] = field(default_factory=dict)

    @property
    def interrupted(self) -> bool:
        return self.state is TurnState.INTERRUPTED

    @property
    def sent_ms(self) -> float:
        return sum(c.duration_ms for c in self.chunks)

    def report_playback(self, played_ms: float) -> None:
        self.played_ms = min(max(played_ms, self.played_ms or 0.0), self.sent_ms)

    def heard_text(self) -> str:
        """The reply text up to the playback position (or all audio sent, if none reported)."""
        position = self.played_ms if self.played_ms is not None else self.sent_ms
        heard: list[str] = []
        for chunk in self.chunks:
            if position <= 0:
                break
            if position >= chunk.duration_ms:
                heard.append(chunk.text)
            else:
                heard.append(cut_text(chunk.text, position / chunk.duration_ms))
            position -= chunk.duration_ms
        return join_chunks(heard).strip()


def cut_text(text: str, fraction: float) -> str:
    """The first ``fraction`` of ``text``: whole words, or characters for CJK text."""
    if fraction <= 0:
        return ""
    if _CJK.search(text):
        return text[: int(len(text) * fraction)]
    words = text.split()
    return " ".join(words[: int(len(words) * fraction)])


def join_chunks(chunks: list[str]) -> str:
    out = ""
    for chunk in chunks:
        if out and not _CJK.search(out[-1:]) and not out.endswith(" "):
            out += " "
        out += chunk.strip()
    return out
