"""Human voices and the peers questions, each turn a new conversation, against the default app.

`avatar bench latency` asks all its questions in one conversation, in two synthetic voices. This
asks each clip in a conversation of its own (``--same`` for one conversation), as someone trying
the server would: the human recordings shipped in moonshine-voice (Beckett, Dickens, cut into
sentences as `avatar bench stt` does), the Mandarin recordings in ../shared/audio/zh, and the
peers clips (benchmarks/audio, Piper and espeak-ng). Per turn: voice to voice as the client
measures it (to the first reply audio, and to its first sound), how the turn ended, Whisper's
time and what it heard.

    PYTHONPATH=src .venv/bin/python benchmarks/fresh_turns.py --json docs/benchmarks/fresh.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import websockets

from avatar.audio.pcm import PcmAudio
from avatar.bench import latency as lat
from avatar.bench.stt_set import Sample, human_en, human_zh, read_16k
from avatar.engines.hub import EngineHub
from avatar.engines.vad.segments import speech_segments
from avatar.settings import Settings, load_settings

AUDIO = Path(__file__).parent / "audio"
ZH = Path(__file__).resolve().parents[1] / ".." / "shared" / "audio" / "zh"
TOKEN = "bench-token-0123456789abcdef"
GROUPS = ("human-en", "human-zh", "peers")


def samples(groups: list[str], zh_dir: Path = ZH) -> list[Sample]:
    out: list[Sample] = []
    if "human-en" in groups:
        out += human_en()
    if "human-zh" in groups:
        out += human_zh(zh_dir)
    if "peers" in groups:
        for item in json.loads((AUDIO / "manifest.json").read_text()):
            if not item.get("warmup"):
                wav = AUDIO / item["file"]
                out.append(Sample("peers", item["file"], "en", item["text"], read_16k(wav)))
    return out


def clip(sample: Sample, hub: EngineHub) -> lat.Clip:
    speech = PcmAudio(sample.samples, 16_000)
    segments = speech_segments(speech, hub.new_vad())
    end = segments[-1][1] if segments else speech.duration_s
    pcm = PcmAudio.silence(lat.LEAD_S, 16_000).concat(speech).to_s16le()
    return lat.Clip(f"{sample.group}/{sample.name}", sample.reference, pcm, lat.LEAD_S + end)


async def ask(url: str, clips: list[lat.Clip], same: bool) -> list[dict[str, Any]]:
    def connect() -> Any:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        return websockets.connect(f"{url}/ws/chat", max_size=1 << 22, additional_headers=headers)

    rows = []
    shared = await connect() if same else None
    if shared is not None:
        await shared.recv()  # session_started
    try:
        for c in clips:
            if shared is not None:
                result = await lat.one_turn(shared, c)
            else:
                async with connect() as ws:
                    await ws.recv()
                    result = await lat.one_turn(ws, c)
            row = result.record()
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
    finally:
        if shared is not None:
            await shared.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", default=",".join(GROUPS))
    parser.add_argument("--same", action="store_true", help="one conversation for every clip")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--zh-dir", type=Path, default=ZH, help="the Mandarin recordings")
    args = parser.parse_args()
    groups = [g for g in args.groups.split(",") if g]
    if unknown := set(groups) - set(GROUPS):
        parser.error(f"unknown group(s) {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    if "human-zh" in groups and not (args.zh_dir / "README.md").is_file():
        parser.error(
            f"no Mandarin recordings at {args.zh_dir}: pass --zh-dir, or leave out human-zh"
        )
    base = Settings()
    settings = load_settings(
        data_dir=Path(tempfile.mkdtemp(prefix="avatar-fresh-")),
        api_token=TOKEN,
        server={"preload": True},
        models={"cache_dir": base.model_cache_dir},
    )
    hub = EngineHub(settings)
    clips = [clip(s, hub) for s in samples(groups, args.zh_dir)]
    with lat.served(settings, hub) as url:
        rows = asyncio.run(ask(url, clips, args.same))
    summary: dict[str, Any] = {}
    for group in groups:
        v2v = [r["v2v_client_ms"] for r in rows if r["voice"].startswith(group + "/")]
        answered = [ms for ms in v2v if ms >= 0]  # negative: answered before the clip ended
        sounds = [
            r["first_sound_client_ms"]
            for r in rows
            if r["voice"].startswith(group + "/") and (r["first_sound_client_ms"] or -1) >= 0
        ]
        if answered:
            summary[group] = {
                "n": len(v2v),
                "cut_in": len(v2v) - len(answered),
                "p50": round(lat.percentile(answered, 0.5)),
                "p95": round(lat.percentile(answered, 0.95)),
                "first_sound_p50": round(lat.percentile(sounds, 0.5)) if sounds else None,
            }
    print(json.dumps(summary))
    if args.json:
        meta = {"same_conversation": args.same, "groups": groups}
        report = {"meta": meta, "summary": summary, "turns": rows}
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
