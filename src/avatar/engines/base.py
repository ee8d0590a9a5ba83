"""The engine Protocols: one small interface per capability, each with a capabilities record.

Engines are batch first; streaming is opt-in and declared in the capabilities. Local engines run
their blocking inference on their own single-thread executor (see :mod:`avatar.engines.executor`);
remote engines are ordinary engines that speak HTTP. Every engine is loaded with ``load()``
(blocking, idempotent) before use and can be released with ``unload()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from avatar.audio.pcm import PcmAudio
from avatar.engines.cpu_turns import CpuTurns

Role = Literal["system", "user", "assistant"]


@runtime_checkable
class Engine(Protocol):
    """What every engine has: a name, a load state, and load/unload."""

    name: str

    @property
    def loaded(self) -> bool: ...

    def load(self) -> None:
        """Load weights (blocking, idempotent). Raises ModelError/EngineUnavailable."""

    def unload(self) -> None:
        """Free the weights; a later ``load()`` brings them back."""


# --- voice activity -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VadCapabilities:
    sample_rate: int
    frame_samples: int


class VoiceActivityDetector(Engine, Protocol):
    """Speech probability per fixed-size frame. Stateful: one instance per audio stream."""

    capabilities: VadCapabilities

    def probability(self, frame: npt.NDArray[np.float32]) -> float:
        """Speech probability of exactly ``capabilities.frame_samples`` samples."""

    def reset(self) -> None:
        """Forget the stream's state (start of a new stream)."""


# --- speech to text -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SttCapabilities:
    streaming: bool
    languages: frozenset[str] | None  # None: multilingual
    sample_rate: int = 16_000
    detects_language: bool = False


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str | None
    duration_s: float
    no_speech_probability: float = 0.0


@dataclass(frozen=True, slots=True)
class TimedWord:
    start: float  # seconds from the start of the audio
    end: float
    word: str


@dataclass(frozen=True, slots=True)
class TimedSegment:
    """A stretch of the transcript with its time in the audio (subtitles, ``verbose_json``)."""

    start: float
    end: float
    text: str
    words: tuple[TimedWord, ...] = ()
    avg_logprob: float | None = None  # the decoder's, where the engine reports them
    compression_ratio: float | None = None
    no_speech_prob: float | None = None


@dataclass(frozen=True, slots=True)
class TimedTranscript:
    text: str
    language: str | None
    duration_s: float
    segments: tuple[TimedSegment, ...]


class SpeechToText(Engine, Protocol):
    """Whole-utterance transcription."""

    capabilities: SttCapabilities

    async def transcribe(
        self, audio: PcmAudio, *, language: str | None = None, likely_language: str | None = None
    ) -> Transcript:
        """Transcribe mono audio at ``capabilities.sample_rate``; ``language`` None detects.

        ``likely_language``: what the conversation has been in; an engine may take a doubtful
        detection that agrees with it instead of checking it at greater cost.
        """


class SttStream(Protocol):
    """An open streaming transcription: feed audio, read partials, finish for the final text."""

    async def feed(self, audio: PcmAudio) -> str | None:
        """Add audio; returns the new partial text when it changed, else None."""

    async def finish(self) -> Transcript:
        """End the stream and return the final transcript."""

    async def aclose(self) -> None:
        """Abandon the stream (barge-in, disconnect), freeing its resources."""


class StreamingSpeechToText(SpeechToText, Protocol):
    """An STT engine that can also transcribe while audio arrives."""

    def open_stream(self, *, language: str | None = None) -> SttStream: ...


# --- chat model -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    max_tokens: int = 200
    temperature: float = 0.7
    stop: tuple[str, ...] = ()
    json_mode: bool = False  # the reply must be one JSON object (engines with ``json_mode``)
    # A voice reply: the chat model takes turns with TTS on the CPU (a local engine waits
    # between tokens while TTS synthesizes). None: not a voice reply.
    cpu_turns: CpuTurns | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class LlmCapabilities:
    streaming: bool = True
    context_tokens: int = 4096
    remote: bool = False
    json_mode: bool = False  # can constrain a reply to valid JSON (a grammar, or the server's)


class ChatModel(Engine, Protocol):
    """A chat model that streams its reply as text deltas."""

    capabilities: LlmCapabilities

    def stream_chat(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[str]:
        """Yield text deltas; closing the iterator (or cancelling) stops generation promptly."""

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's context (an estimate for remote models)."""


class TextTurnDetector(Protocol):
    """Optional ChatModel capability: how likely the user's turn ends after their words."""

    async def end_of_turn_probability(self, messages: Sequence[ChatMessage]) -> float | None:
        """P(end of turn) after ``messages`` (the last: the user's words so far); None: unknown."""


async def text_end_of_turn(llm: object, messages: Sequence[ChatMessage]) -> float | None:
    """The chat model's end-of-turn probability, or None for engines without the capability."""
    method = getattr(llm, "end_of_turn_probability", None)
    return None if method is None else await method(messages)


async def read_ahead(llm: object, messages: Sequence[ChatMessage]) -> None:
    """Let a local chat model read ``messages`` up to the next user's words now, if it can."""
    method = getattr(llm, "read_ahead", None)
    if method is not None:
        await method(messages)


# --- end of turn ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnCapabilities:
    sample_rate: int
    window_s: float  # how much of the utterance's end the model looks at


class TurnAnalyzer(Engine, Protocol):
    """Acoustic end of turn: does the utterance so far sound finished?"""

    capabilities: TurnCapabilities

    async def completion_probability(self, audio: PcmAudio) -> float:
        """P(the turn is complete) from the utterance so far (mono, any sample rate)."""


# --- text to speech -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VoiceRef:
    """A voice to speak with: a named engine voice, or a profile's reference audio for cloning."""

    name: str | None = None
    reference_audio: PcmAudio | None = None
    reference_text: str | None = None
    conditioning: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TtsCapabilities:
    sample_rate: int
    languages: frozenset[str] | None  # None: any language
    streaming: bool = False  # yields several chunks per call
    cloning: bool = False
    quality: Literal["fast", "hq"] = "fast"


class TextToSpeech(Engine, Protocol):
    """Speech from text. ``synthesize_stream`` yields audio chunks (at least one)."""

    capabilities: TtsCapabilities

    def synthesize_stream(
        self, text: str, *, language: str = "en", voice: VoiceRef | None = None
    ) -> AsyncIterator[PcmAudio]:
        """Yield audio chunks at ``capabilities.sample_rate`` as they are made."""

    def describe_voice(self, language: str, voice: VoiceRef | None) -> str:
        """Which voice would speak (e.g. 'piper:joe', 'espeak-ng:cmn', 'clone:<profile>')."""


# --- speaker embedding ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpeakerCapabilities:
    sample_rate: int
    dimensions: int


class SpeakerEncoder(Engine, Protocol):
    """A fixed-size voiceprint of an utterance (L2-normalised)."""

    capabilities: SpeakerCapabilities

    async def embed(self, audio: PcmAudio) -> npt.NDArray[np.float32]: ...
