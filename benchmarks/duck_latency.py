"""How soon after the user starts to speak the server says ``reply_quiet``, in stream time.

The session quiets an audible reply at the first frame the VAD scores as speech
(pipeline/ducking.py). For each real clip (benchmarks/audio/ and ../shared/audio/zh/ when
present) this finds the speech onset from the signal's energy, runs the configured VAD
(Silero) frame by frame as the session does, and reports how far after the onset that first
voiced frame ends: the server-side part of the time until the reply goes quiet. Add the
client's capture chunk (the web UI posts 100 ms), the network, and the player's gain ramp
(~30 ms) for what the user hears.

    PYTHONPATH=src .venv/bin/python benchmarks/duck_latency.py
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from avatar.engines.hub import EngineHub
from avatar.pipeline.utterance import FRAME, FRAME_MS, SAMPLE_RATE_IN
from avatar.settings import Settings

ROOT = Path(__file__).resolve().parent
ZH = Path(os.environ.get("AVATAR_ZH_AUDIO", "/work/shared/audio/zh"))  # real Mandarin speech
CLIPS = sorted((ROOT / "audio").glob("q*.wav")) + sorted(ZH.glob("*.wav"))
WINDOW = 160  # 10 ms at 16 kHz
ONSET_DB = -40.0  # a 10 ms window this loud (dBFS RMS) is where speech begins


def load(path: Path) -> np.ndarray:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if rate != SAMPLE_RATE_IN:
        mono = soxr.resample(mono, rate, SAMPLE_RATE_IN)
    return np.concatenate([np.zeros(SAMPLE_RATE_IN // 2, np.float32), mono.astype(np.float32)])


def energy_onset_ms(samples: np.ndarray) -> float | None:
    for i in range(0, len(samples) - WINDOW, WINDOW):
        rms = float(np.sqrt(np.mean(samples[i : i + WINDOW] ** 2)))
        if rms > 0 and 20 * np.log10(rms) > ONSET_DB:
            return i * 1000 / SAMPLE_RATE_IN
    return None


def first_voiced_frame_end_ms(hub: EngineHub, samples: np.ndarray) -> float | None:
    vad = hub.new_vad()
    threshold = hub.settings.vad.threshold
    for k in range(len(samples) // FRAME):
        if vad.probability(samples[k * FRAME : (k + 1) * FRAME]) >= threshold:
            return (k + 1) * FRAME_MS
    return None


def main() -> None:
    hub = EngineHub(Settings())
    delays = []
    print("clip | energy onset ms | first voiced frame ends ms | delay ms")
    for clip in CLIPS:
        samples = load(clip)
        onset, voiced = energy_onset_ms(samples), first_voiced_frame_end_ms(hub, samples)
        if onset is None or voiced is None:
            print(f"{clip.name} | no speech found")
            continue
        delays.append(voiced - onset)
        print(f"{clip.name} | {onset:.0f} | {voiced:.0f} | {voiced - onset:.0f}")
    hub.close()
    q = statistics.quantiles(delays, n=20)
    print(
        f"n={len(delays)} median {statistics.median(delays):.0f} ms, p95 {q[-1]:.0f} ms, "
        f"max {max(delays):.0f} ms"
    )


if __name__ == "__main__":
    main()
