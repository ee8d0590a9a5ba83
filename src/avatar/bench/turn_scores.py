"""End-of-turn signals on the hesitation set: which first halves wait, which questions end.

For every clip of :mod:`avatar.bench.hesitation`, at the pause (the first half plus the short
silence after which the session asks) and at the end (the whole question plus that silence):
the acoustic P(complete) of smart-turn, the Whisper transcript, and the chat model's
P(end-of-turn token) after it (also with the transcript's final punctuation removed, since
Whisper may or may not punctuate a half sentence). Then, for acoustic alone, text alone and
their weighted means, how many first halves are judged incomplete and how many whole questions
complete, on the questions used to choose thresholds and on those held out.

    python -m avatar.bench.turn_scores --out turn-scores.json   # measure (a few minutes)
    python -m avatar.bench.turn_scores --scores turn-scores.json  # re-tabulate only
    python -m avatar.bench.turn_scores --rescore turn-scores.json --out new.json  # the text
        # signal of today's code on the saved transcripts (the same words, ~1 minute)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from avatar.audio.pcm import PcmAudio
from avatar.bench.hesitation import RATE, PausedClip, make_paused_clips, whisper_for_words
from avatar.engines.base import ChatMessage, text_end_of_turn
from avatar.engines.hub import EngineHub
from avatar.pipeline.end_of_turn import EndOfTurnPolicy
from avatar.settings import load_settings

ASK_AFTER_S = 0.2  # turn.min_silence_ms until round 13 (300 since): the scores were taken so
WEIGHTS = (1.0, 0.0, 0.25, 0.5, 0.75)  # acoustic alone, text alone, fused
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


@dataclass(frozen=True, slots=True)
class Score:
    """The signals at one point of one clip (``part``: "first" at the pause, "whole" at the end)."""

    voice: str
    text: str
    held_out: bool
    part: str
    transcript: str
    acoustic: float
    text_p: float | None
    # the transcript without its final punctuation: round 3's comparison. The text signal now
    # reads every transcript that way (TurnPrompter drops the final punctuation), so the two
    # columns are one value and it is computed once.
    text_bare_p: float | None
    acoustic_ms: float
    text_ms: float


async def score(hub: EngineHub, clip: PausedClip, part: str) -> Score:
    audio = clip.first if part == "first" else clip.whole
    audio = audio.concat(PcmAudio.silence(ASK_AFTER_S, RATE))
    turn = hub.turn
    assert turn is not None, "set AVATAR_TURN__ENGINE"
    start = time.perf_counter()
    acoustic = await turn.completion_probability(audio)
    acoustic_ms = (time.perf_counter() - start) * 1000
    transcript = (await hub.stt.transcribe(audio, language=clip.language)).text
    text_p, text_ms = await _text(hub, transcript)
    return Score(
        clip.voice, clip.text, clip.held_out, part, transcript, acoustic, text_p, text_p,
        acoustic_ms, text_ms,
    )  # fmt: skip


async def _text(hub: EngineHub, words: str) -> tuple[float | None, float]:
    system = ChatMessage("system", hub.settings.llm.system_prompt)
    start = time.perf_counter()
    p = await text_end_of_turn(hub.llm, [system, ChatMessage("user", words)]) if words else None
    return p, (time.perf_counter() - start) * 1000


async def rescore(hub: EngineHub, saved: list[Score]) -> list[Score]:
    """The text signal again on saved transcripts (acoustic scores kept): a change to the text
    signal compared on exactly the same words."""
    hub.load("llm")
    out = []
    for s in saved:
        text_p, text_ms = await _text(hub, s.transcript)
        out.append(replace(s, text_p=text_p, text_bare_p=text_p, text_ms=text_ms))
    return out


async def measure(hub: EngineHub, zh_dir: Path | None) -> list[Score]:
    clips = await make_paused_clips(hub, whisper_for_words(hub), zh_dir)
    for slot in ("stt", "llm", "turn"):
        hub.load(slot)
    return [await score(hub, clip, part) for clip in clips for part in ("first", "whole")]


def counts(scores: list[Score], policy: EndOfTurnPolicy, bare: bool = False) -> dict[str, int]:
    """First halves judged incomplete and whole questions judged complete (``n`` of each)."""
    firsts = [s for s in scores if s.part == "first"]
    wholes = [s for s in scores if s.part == "whole"]

    def complete(s: Score) -> bool:
        fused = policy.fuse(s.acoustic, s.text_bare_p if bare else s.text_p)
        return fused is not None and fused >= policy.complete_threshold

    return {
        "n": len(firsts),
        "first_incomplete": sum(not complete(s) for s in firsts),
        "whole_complete": sum(complete(s) for s in wholes),
    }


def sweep(scores: list[Score], bare: bool = False) -> list[dict[str, object]]:
    """Every (weight, threshold), scored on the tuning half and on the held-out half."""
    tune = [s for s in scores if not s.held_out]
    held = [s for s in scores if s.held_out]
    rows: list[dict[str, object]] = []
    for w in WEIGHTS:
        for t in THRESHOLDS:
            policy = EndOfTurnPolicy(acoustic_weight=w, complete_threshold=t)
            rows.append(
                {"weight": w, "threshold": t, "tune": counts(tune, policy, bare),
                 "held_out": counts(held, policy, bare)}
            )  # fmt: skip
    return rows


def best(rows: list[dict[str, object]], weight: float) -> dict[str, object]:
    """The threshold for ``weight`` with the most right answers on the tuning half.

    Ties go to the lower threshold (ends complete questions sooner).
    """
    mine = [r for r in rows if r["weight"] == weight]
    return max(mine, key=lambda r: _right(r["tune"]) - float(r["threshold"]) / 100)  # type: ignore[arg-type]


def _right(c: dict[str, int]) -> int:
    return c["first_incomplete"] + c["whole_complete"]


def report(scores: list[Score]) -> str:
    lines = [
        "| signal | weight | threshold | tune: firsts incomplete | tune: wholes complete"
        " | held out: firsts incomplete | held out: wholes complete |",
        "|---" * 7 + "|",
    ]
    for bare in (False, True):
        rows = sweep(scores, bare)
        for w in WEIGHTS:
            r = best(rows, w)
            tune, held = r["tune"], r["held_out"]
            name = {1.0: "acoustic", 0.0: "text"}.get(w, "fused")
            name += " (no final punctuation)" if bare and w != 1.0 else ""
            if bare and w == 1.0:
                continue
            lines.append(
                f"| {name} | {w} | {r['threshold']} | {tune['first_incomplete']}/{tune['n']} |"  # type: ignore[index]
                f" {tune['whole_complete']}/{tune['n']} | {held['first_incomplete']}/{held['n']} |"  # type: ignore[index]
                f" {held['whole_complete']}/{held['n']} |"  # type: ignore[index]
            )
    acoustic = [s.acoustic_ms for s in scores]
    text = [s.text_ms for s in scores if s.text_p is not None]
    lines.append(
        f"\nPer call: acoustic median {statistics.median(acoustic):.0f} ms"
        f" (max {max(acoustic):.0f}); text median {statistics.median(text):.0f} ms"
        f" (max {max(text):.0f})."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the raw scores here (JSON)")
    parser.add_argument("--scores", type=Path, help="tabulate these scores instead of measuring")
    parser.add_argument("--rescore", type=Path, help="recompute the text signal of these scores")
    parser.add_argument("--zh-dir", type=Path, default=Path("../shared/audio/zh"))
    args = parser.parse_args()
    if args.scores:
        scores = [Score(**row) for row in json.loads(args.scores.read_text())]
    else:
        hub = EngineHub(load_settings())
        try:
            if args.rescore:
                saved = [Score(**row) for row in json.loads(args.rescore.read_text())]
                scores = asyncio.run(rescore(hub, saved))
            else:
                scores = asyncio.run(measure(hub, args.zh_dir if args.zh_dir.exists() else None))
        finally:
            hub.close()
        if args.out:
            args.out.write_text(json.dumps([asdict(s) for s in scores], ensure_ascii=False))
    print(report(scores))


if __name__ == "__main__":
    main()
