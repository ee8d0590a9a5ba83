"""Speech for the OpenAI-compatible API: voice resolution, tempo, and OpenAI's output formats.

``voice`` may name a stored voice profile (by id or name). Engines that clone get the profile's
reference audio; the others (the embedded Piper/espeak-ng TTS) speak with their packaged voice,
and the response says so. Any other name ("alloy", "nova", ...) means the default voice.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import Final, cast

import av
import av.filter
import numpy as np

from avatar.audio.decode import AudioLimits, decode_audio
from avatar.audio.encode import encode_flac, encode_opus, encode_wav, opus_rate
from avatar.audio.pcm import PcmAudio
from avatar.audio.resample import resample
from avatar.engines.base import TextToSpeech, VoiceRef
from avatar.engines.hub import EngineHub
from avatar.engines.tts.language import detect_text_language
from avatar.services import speech
from avatar.storage import AudioStore, Database, NotFound, VoiceProfileRow, VoiceProfiles

PCM_RATE: Final = 24_000  # OpenAI's raw PCM: 24 kHz, 16-bit signed little-endian, mono
MEDIA_TYPES: Final = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
HQ_MODELS: Final = frozenset({"tts-1-hd", "gpt-4o-tts", "hq"})
_PYAV: Final = {"mp3": ("mp3", "libmp3lame"), "aac": ("adts", "aac")}
_BITRATE: Final = 64_000


@dataclass(frozen=True, slots=True)
class VoiceChoice:
    """Who speaks: the engine voice used, the profile asked for, and whether it was cloned."""

    label: str
    profile: VoiceProfileRow | None
    ref: VoiceRef | None
    cloned: bool


@dataclass(frozen=True, slots=True)
class SpeechResult:
    data: bytes
    media_type: str
    sample_rate: int
    mode: str
    voice: VoiceChoice


def tts_mode(hub: EngineHub, model: str) -> str:
    """``hq`` for HD model names when an hq engine is configured, else ``fast``."""
    hq = hub.settings.tts.hq
    wants_hq = model in HQ_MODELS or (hq is not None and model == hq.model)
    return "hq" if wants_hq and hq is not None else "fast"


async def find_profile(db: Database, voice: str) -> VoiceProfileRow | None:
    """The voice profile with this id, else this name, else None."""
    async with db.read() as session:
        repo = VoiceProfiles(session)
        for lookup in (repo.get, repo.get_by_name):
            try:
                return await lookup(voice)
            except NotFound:
                continue
    return None


async def resolve_voice(
    db: Database, store: AudioStore, engine: TextToSpeech, voice: str, language: str
) -> VoiceChoice:
    profile = await find_profile(db, voice)
    ref = None
    if profile is not None and engine.capabilities.cloning:
        path = await asyncio.to_thread(store.open_path, profile.audio)
        data = await asyncio.to_thread(path.read_bytes)
        audio = await asyncio.to_thread(decode_audio, data, limits=AudioLimits(), target_rate=None)
        ref = VoiceRef(
            name=profile.name, reference_audio=audio, reference_text=profile.reference_text
        )
    return VoiceChoice(engine.describe_voice(language, ref), profile, ref, ref is not None)


async def synthesize(
    hub: EngineHub,
    db: Database,
    store: AudioStore,
    *,
    text: str,
    voice: str,
    model: str,
    response_format: str,
    speed: float,
) -> SpeechResult:
    """Speak ``text`` and encode it as ``response_format``."""
    mode = tts_mode(hub, model)
    language = detect_text_language(text)
    choice = await resolve_voice(db, store, hub.tts(mode), voice, language)
    audio = await speech.say(hub, text, language=language, quality=mode, voice=choice.ref)
    data, rate = await asyncio.to_thread(_finish, audio, speed, response_format)
    return SpeechResult(data, MEDIA_TYPES[response_format], rate, mode, choice)


def _finish(audio: PcmAudio, speed: float, fmt: str) -> tuple[bytes, int]:
    if speed != 1.0:
        audio = change_tempo(audio, speed)
    return encode(audio, fmt)


def encode(audio: PcmAudio, fmt: str) -> tuple[bytes, int]:
    """``audio`` in one of OpenAI's speech formats, with the sample rate of the bytes."""
    if fmt == "pcm":
        audio = resample(audio, PCM_RATE)
        return audio.to_s16le(), PCM_RATE
    if fmt in _PYAV:
        return _encode_pyav(audio, *_PYAV[fmt]), audio.sample_rate
    encoders = {"wav": encode_wav, "flac": encode_flac, "opus": encode_opus}
    data = encoders[fmt](audio)
    return data, opus_rate(audio.sample_rate) if fmt == "opus" else audio.sample_rate


def _frame(audio: PcmAudio) -> av.AudioFrame:
    samples = np.clip(audio.samples, -1.0, 1.0).astype(np.float32).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
    frame.sample_rate = audio.sample_rate
    frame.pts = 0
    return frame


def _encode_pyav(audio: PcmAudio, container: str, codec: str) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format=container) as media:
        stream = cast(
            av.AudioStream, media.add_stream(codec, rate=audio.sample_rate, layout="mono")
        )
        stream.bit_rate = _BITRATE
        for item in (_frame(audio), None):
            for packet in stream.encode(item):
                media.mux(packet)
    return out.getvalue()


def change_tempo(audio: PcmAudio, speed: float) -> PcmAudio:
    """Play ``speed`` times faster with the pitch kept (FFmpeg's atempo filter)."""
    factors = []
    while speed < 0.5:  # atempo takes 0.5-100 per stage
        factors.append(0.5)
        speed /= 0.5
    factors.append(speed)
    graph = av.filter.Graph()
    nodes = [graph.add_abuffer(format="flt", sample_rate=audio.sample_rate, layout="mono")]
    nodes += [graph.add("atempo", f"{f:.6f}") for f in factors]
    nodes.append(graph.add("abuffersink"))
    for a, b in zip(nodes, nodes[1:], strict=False):
        a.link_to(b)
    graph.configure()
    graph.push(_frame(audio))
    graph.push(None)
    pieces = []
    while True:
        try:
            pieces.append(graph.pull().to_ndarray().reshape(-1))
        except (av.error.EOFError, av.error.BlockingIOError):
            break
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return PcmAudio(samples.astype(np.float32), audio.sample_rate)
