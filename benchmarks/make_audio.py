"""Write the benchmark's spoken questions once: benchmarks/audio/*.wav + manifest.json.

Run with AVATAR's venv: ``.venv/bin/python benchmarks/make_audio.py``. Even questions are spoken
by Piper joe, odd ones by espeak-ng en-us (AVATAR's two English voices), resampled to 16 kHz mono
s16le with 0.4 s of silence in front. ``speech_end_s`` is the last voiced sample as AVATAR's
Silero VAD sees it: the driver measures voice-to-voice from there, for every system alike.
"""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path

from avatar.audio.pcm import PcmAudio
from avatar.audio.resample import resample
from avatar.engines.hub import EngineHub
from avatar.engines.registry import create_engine
from avatar.engines.vad.segments import speech_segments
from avatar.settings import Settings, TtsSlotSettings

OUT = Path(__file__).resolve().parent / "audio"
LEAD_S = 0.4
WARMUP = "Hello, can you hear me?"
QUESTIONS = [
    "What is the capital of France?",
    "How many days are there in a week?",
    "What colour is the sky on a clear day?",
    "What do bees make?",
    "Which planet is closest to the sun?",
    "How many legs does a spider have?",
    "At what temperature does water boil?",
    "Who wrote Romeo and Juliet?",
    "What is the largest ocean on Earth?",
    "How many minutes are in an hour?",
    "What language is spoken in Brazil?",
    "What is the opposite of hot?",
    "Can you name a fruit that is yellow?",
    "What gas do plants take in from the air?",
    "How many continents are there?",
    "What is frozen water called?",
    "Which animal is called the king of the jungle?",
    "What is two plus three?",
    "In which country are the pyramids of Giza?",
    "What do you call a baby cat?",
]


async def main() -> None:
    hub = EngineHub(Settings())
    voices = {
        "piper-joe": hub.tts("fast"),
        "espeak-en": create_engine(
            "tts", "espeak-ng", TtsSlotSettings(engine="espeak-ng"), hub.models
        ),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = []
    for n, text in enumerate([WARMUP, *QUESTIONS]):
        voice = "piper-joe" if n % 2 == 0 else "espeak-en"
        audio: PcmAudio | None = None
        async for chunk in voices[voice].synthesize_stream(text, language="en"):
            audio = chunk if audio is None else audio.concat(chunk)
        assert audio is not None
        speech = resample(audio, 16_000)
        segments = speech_segments(speech, hub.new_vad())
        end = segments[-1][1] if segments else speech.duration_s
        clip = PcmAudio.silence(LEAD_S, 16_000).concat(speech)
        name = "warmup.wav" if n == 0 else f"q{n:02d}.wav"
        with wave.open(str(OUT / name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16_000)
            w.writeframes(clip.to_s16le())
        manifest.append(
            {
                "file": name,
                "text": text,
                "voice": voice,
                "duration_s": round(clip.duration_s, 3),
                "speech_end_s": round(LEAD_S + end, 3),
                "warmup": n == 0,
            }
        )
        print(f"{name}: {voice}, speech ends at {LEAD_S + end:.2f} s: {text}")
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    hub.close()


if __name__ == "__main__":
    asyncio.run(main())
