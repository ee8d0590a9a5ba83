"""How many tokens a trimmed Whisper decode spends on a question said after a second of silence.

The endpointer hands Whisper up to 1 s from before the speech. On its own short window the
decoder may say the question again and again until its budget; ``whisper_trim.without_lead``
cuts that silence for English. For the peers clips (benchmarks/audio) with ``--lead`` seconds of
silence before them: decoded tokens, median time and guard fallbacks, with and without the cut,
and with more padding after the speech instead (``--pads``).

    PYTHONPATH=src .venv/bin/python benchmarks/whisper_lead.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from avatar.engines.hub import EngineHub
from avatar.engines.stt import whisper as w
from avatar.engines.stt import whisper_trim as wt
from avatar.settings import Settings
from avatar.testing.whisper_tokens import counting_tokens

AUDIO = Path(__file__).parent / "audio"


def main(lead_s: float, pads: list[float]) -> None:
    stt = EngineHub(Settings()).stt
    stt.load()
    model: Any = stt._model  # type: ignore[attr-defined]
    tokenizer = w._tokenizer(model, "en")
    manifest = json.loads((AUDIO / "manifest.json").read_text())
    clips = []
    for item in (q for q in manifest if not q.get("warmup")):
        samples, rate = sf.read(AUDIO / item["file"], dtype="float32")
        assert rate == 16_000
        lead = np.zeros(int(lead_s * rate), np.float32)
        clips.append(np.concatenate([lead, samples, np.zeros(1_600, np.float32)]))
    for cut in (False, True):
        for pad in pads:
            wt.PAD_SAMPLES = int(pad * 16_000)
            times, fallbacks = [], 0
            with counting_tokens(model) as generated:
                for samples in clips:
                    begin = time.perf_counter()
                    speech = wt.without_lead(samples) if cut else samples
                    encoded = model.encode(wt.window(model, speech))
                    options = w._options(tokenizer, 1)
                    out = wt.decode_trimmed(
                        model, encoded, "en", tokenizer, options, len(speech) / 16_000
                    )
                    times.append((time.perf_counter() - begin) * 1000)
                    fallbacks += out.text is None
            tokens = statistics.fmean(generated)
            print(
                f"lead cut {cut}, pad {pad} s: {tokens:.1f} tokens a question, median "
                f"{statistics.median(times):.0f} ms, {fallbacks} sent back (n={len(clips)})",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lead", type=float, default=1.0, help="silence before each clip (s)")
    parser.add_argument("--pads", default="1,2,3", help="silence after the speech to try (s)")
    args = parser.parse_args()
    main(args.lead, [float(p) for p in args.pads.split(",")])
