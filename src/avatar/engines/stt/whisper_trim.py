"""Whisper on the utterance's own length, with a guard that sends doubtful results back.

Whisper pads every input to 30 s; CTranslate2's encoder also accepts fewer frames, and encoding
the utterance plus ~1 s of padding costs a fraction of the 30 s pass (whisper-base int8, 2 threads:
37-89 ms vs 631 ms on 2.3-3.5 s questions). Unpadded decoding has known failure modes: the decoder
can loop ("How many legs on the spider-head? How many legs on the spide..."), or hallucinate on
silence. :func:`decode_trimmed` decodes once, greedily, and returns a reason instead of a text
when the result looks like one of those, so the caller runs the normal padded decode instead.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from avatar.audio.edges import FRAME_S, frame_dbfs

HOP = 160  # samples per feature frame at 16 kHz
SAMPLE_RATE = 16_000
PAD_SAMPLES = 16_000  # 1 s of silence after the speech: without it the last word is often lost
LEAD_KEPT_S, LEAD_DB = 0.3, 40.0  # silence kept before the first sound; what counts as sound
# Languages whose utterances lose their leading silence before a trimmed decode. English: after
# 1 s of silence whisper-base said the question 2-3 times over on its short window (25.7 tokens
# a question on 20 benchmark clips, 10.3 without the lead; 299 -> 178 ms on this 2-core AMD
# VM). Mandarin read worse without it ("希老女以后" for "希望你以后", ../shared/audio/zh): kept.
LEAD_TRIMMED = frozenset({"en"})
# Languages whose trimmed decode searches with a beam of this width instead of greedily. Mandarin:
# on 26 clips (24 Kokoro sentences, 2 human recordings) greedy trimmed read CER 16.5 % against the
# padded decode's 12.5 %, more than the 1 point allowed; a beam of 5 reads 12.0 % for ~130 ms more
# a 3 s question on this 2-core AMD VM (docs/BENCHMARKS.md, round 7). English is already as good
# trimmed and greedy as padded, and keeps its latency.
TRIMMED_BEAM = {"zh": 5}
MAX_FRAMES = 3000  # Whisper's window; longer audio takes the padded path
# Token budget = BASE + PER_S * duration. Mandarin runs ~6-8 tokens/s and English ~3-5, so an
# utterance that needs more is looping; the budget also bounds what a loop can cost.
BUDGET_BASE, BUDGET_PER_S = 10, 12.0
# Below this, the language read off a short trimmed window is a guess: let the padded pass decide.
MIN_LANGUAGE_P = 0.6
# The conversation's language (``likely``) is kept unless the audio makes another this many times
# as probable. Short English was read as another language ("Ever failed." as Dutch at 0.75, English
# 0.08: answered in Dutch; "How many continents" Latin 0.45, English 0.42); on 26 Mandarin clips
# after English, English was at most 0.05 of Mandarin's probability, so a switch still shows.
LIKELY_WEIGHT = 10.0
# A trimmed decode sent back for these reasons gets a second look before the padded decode: the
# same encoder output decoded without timestamps. Short utterances ("No matter.", "Try again.")
# scored low with their timestamp tokens or looped with them; the words both readings agree on are
# what the padded decode said too, for ~140 ms instead of ~700 (docs/BENCHMARKS.md, round 8).
SECOND_LOOK = frozenset({"low_logprob", "repetition"})
# Text that begins this far past the end of the audio lies in the padding, where no speech was.
# Only where text begins counts: Whisper often closes a segment late, well into the padding, and
# such a decode is as good as the padded one (Beckett's 1.31 s "Ever tried." was sent back for its
# closing timestamp, and the padded decode said the same words; docs/BENCHMARKS.md, round 5).
PAST_END_S = 0.2


@dataclass(frozen=True, slots=True)
class TrimmedResult:
    """One trimmed decode: ``text`` is None when the guard sent it back (``reason`` says why)."""

    text: str | None
    language: str
    no_speech_prob: float
    reason: str | None = None
    rejected: str | None = None  # the text the guard sent back, for benchmarks and logs


def without_lead(samples: np.ndarray) -> np.ndarray:
    """``samples`` from ``LEAD_KEPT_S`` before the first sound on: the silence a live utterance
    starts with (the endpointer keeps up to 1 s before the speech) costs encoder time and, on a
    short window, makes the decoder say the question again (docs/BENCHMARKS.md, round 6).

    "Sound" is a 20 ms frame within ``LEAD_DB`` of the loudest one, so a soft first word ahead
    of a loud question is kept; audio that starts loud, or is all quiet, is returned whole.
    """
    frame = int(FRAME_S * SAMPLE_RATE)
    if len(samples) < 2 * frame:
        return samples
    levels = frame_dbfs(samples, frame)
    floor = float(levels.max()) - LEAD_DB
    loud = np.flatnonzero(levels > floor)
    if floor <= -100.0:  # all quiet (1e-5 RMS): nothing to cut before
        return samples
    start = max(0, int(loud[0]) * frame - int(LEAD_KEPT_S * SAMPLE_RATE))
    return samples[start:]


def trimmable(samples: np.ndarray) -> bool:
    """Whether the utterance fits one window with its padding."""
    return len(samples) + PAD_SAMPLES <= MAX_FRAMES * HOP


def window(model: Any, samples: np.ndarray) -> np.ndarray:
    """Log-mel features of the utterance followed by 1 s of digital silence.

    The silence is added as samples, not as zero features (faster-whisper pads its 30 s window
    with zero features): zero log-mel is not what silence looks like, and without real silence
    after it the last word suffers ("What is the capital of friends?" for a clip that ends right
    after "France?", 2 times of 3).
    """
    padded = np.concatenate([samples, np.zeros(PAD_SAMPLES, dtype=np.float32)])
    features = model.feature_extractor(padded)
    return np.asarray(features[:, : features.shape[-1] - 1])


def token_budget(duration_s: float) -> int:
    """The most text tokens an utterance of ``duration_s`` can honestly need."""
    return BUDGET_BASE + int(np.ceil(BUDGET_PER_S * duration_s))


def detect_language(
    model: Any, encoder_output: Any, likely: str | None = None
) -> tuple[str, float]:
    """Language and its probability from one decoder step on ``encoder_output``: the most
    probable, or ``likely`` unless that one is ``LIKELY_WEIGHT`` times as probable."""
    if not model.model.is_multilingual:
        return "en", 1.0
    ranked = [  # "<|en|>" -> "en", most probable first
        (str(token)[2:-2], float(p)) for token, p in model.model.detect_language(encoder_output)[0]
    ]
    top, probability = ranked[0]
    if likely is not None and likely != top:
        kept = next((p for language, p in ranked if language == likely), 0.0)
        if kept * LIKELY_WEIGHT >= probability:
            return likely, kept
    return top, probability


def loops(keys: list[object]) -> bool:
    """Whether the text ends in a loop: its end repeats the ``p`` tokens before it in full (all
    but one), or the text starts over and its end repeats its own beginning.

    ``keys`` are the tokens as compared (see :func:`token_keys`). "No matter. No matter.", "Can
    you name a color on the sky? Can you name a color on", or a clause said again but for its
    full stop count; parallel clauses do not ("It was the best of times. It was the worst of
    times." shares only its last three tokens with the clause before, and not from the start).
    """
    n = len(keys)
    for p in range(2, n - 2):
        k = 0
        while k < n - p and keys[n - 1 - k] == keys[n - 1 - k - p]:
            k += 1
        if k >= max(p - 1, 3) or (k >= 3 and k == n - p):
            return True
    return False


_ENDS = ".?!。？！"
_SENTENCE_END = re.compile(f"(?<=[{_ENDS}])\\s*")


def repeated_sentence(text: str) -> str | None:
    """The first sentence of ``text`` when the rest only says it again (whole times, the last
    maybe cut short): "What do bees make? What do bees make?" -> "What do bees make?". None for
    anything else, such as parallel clauses ("It was the best of times, it was the worst...")."""
    parts = _SENTENCE_END.split(text.strip(), maxsplit=1)
    if len(parts) != 2 or not parts[1]:
        return None
    first, rest = parts[0].strip(), parts[1].strip()

    def norm(s: str) -> str:  # case and each saying's closing mark aside ("play. Who ... play?")
        return re.sub(r"\s+", " ", s).lower().rstrip(_ENDS)

    unit, tail = norm(first), norm(rest)
    if len(first) < 4:
        return None
    while tail.startswith(unit):
        tail = tail[len(unit) :].lstrip(" " + _ENDS)
    return first if tail == "" or (len(tail) < len(unit) and unit.startswith(tail)) else None


def token_keys(tokenizer: Any, tokens: list[int]) -> list[object]:
    """Tokens compared by their text, case and leading space aside (" Ever" == "Ever");
    a token that is part of a multi-byte character keeps its id."""
    keys: list[object] = []
    for token in tokens:
        text = tokenizer.decode([token])
        keys.append(token if "\ufffd" in text else text.strip().lower())
    return keys


def guard(
    keys: list[object],
    ends: list[float],
    budget: int,
    decoded: tuple[Any, ...],
    options: Any,
    starts: Sequence[float] = (),
) -> str | None:
    """Why a trimmed decode is not to be trusted, or None when it is.

    ``keys``: the text tokens (see :func:`token_keys`); ``ends``: its timestamps, ``starts``: those
    that begin text, in seconds past the utterance's end (positive: in the padding).
    """
    result, avg_logprob, _, compression_ratio = decoded
    if len(keys) + len(ends) >= budget:
        return "token_budget"
    if loops(keys):
        return "repetition"
    if any(start > PAST_END_S for start in starts):
        return "past_end"
    if compression_ratio > options.compression_ratio_threshold:
        return "compression_ratio"
    if avg_logprob < options.log_prob_threshold:
        # Whisper's own rule calls this silence when no_speech_prob is high too; either way the
        # padded decode decides, as it always did
        return "no_speech" if result.no_speech_prob > options.no_speech_threshold else "low_logprob"
    return None


def decode_trimmed(
    model: Any, encoder_output: Any, language: str, tokenizer: Any, options: Any, duration_s: float
) -> TrimmedResult:
    """One greedy decode of a trimmed encoder output, checked by :func:`guard`.

    Uses faster-whisper's own ``generate_with_fallback`` with a single temperature (our fallback
    is the padded decode, not sampling), a token budget from the duration, and timestamps: with
    them the decoder closes its segment at the end of the speech and stops, where without them it
    often says the utterance again ("Ever tried. Ever tried. Ever tried...").
    """
    budget = token_budget(duration_s)
    decoded = _decode_once(model, encoder_output, tokenizer, options, budget, timestamps=True)
    tokens = decoded[0].sequences_ids[0]
    text = [t for t in tokens if t < tokenizer.eot]
    precision = model.time_precision
    ends = [
        (t - tokenizer.timestamp_begin) * precision - duration_s
        for t in tokens
        if t >= tokenizer.timestamp_begin
    ]
    starts = [
        (t - tokenizer.timestamp_begin) * precision - duration_s
        for t, after in zip(tokens, tokens[1:], strict=False)
        if t >= tokenizer.timestamp_begin and after < tokenizer.eot
    ]
    reason = guard(token_keys(tokenizer, text), ends, budget, decoded, options, starts)
    said = tokenizer.decode(text).strip()
    if reason == "repetition" and ends and (once_said := repeated_sentence(said)) is not None:
        # The commonest trimmed failure: a decode that closed its segments (timestamps) but said
        # the whole question again into the padding. The sentence itself is what the padded
        # decode gives too (or better): keep it. A loop without segment ends still falls back.
        return TrimmedResult(once_said, language, float(decoded[0].no_speech_prob), None, said)
    if reason in SECOND_LOOK:
        again = _without_timestamps(model, encoder_output, tokenizer, options, budget)
        if again is not None and said_once(said, again):
            return TrimmedResult(again, language, float(decoded[0].no_speech_prob), None, said)
    if reason:
        return TrimmedResult(None, language, float(decoded[0].no_speech_prob), reason, said)
    return TrimmedResult(said, language, float(decoded[0].no_speech_prob))


def _without_timestamps(
    model: Any, encoder_output: Any, tokenizer: Any, options: Any, budget: int
) -> str | None:
    """The same window decoded again without timestamps: its text, said once, when the guard
    finds nothing else wrong with it (None otherwise)."""
    decoded = _decode_once(model, encoder_output, tokenizer, options, budget, timestamps=False)
    text = [t for t in decoded[0].sequences_ids[0] if t < tokenizer.eot]
    said = tokenizer.decode(text).strip()
    reason = guard(token_keys(tokenizer, text), [], budget + 1, decoded, options)
    if reason == "repetition" or reason == "token_budget":
        # without timestamps the decoder says a short utterance again and again to its budget
        return repeated_sentence(said)
    return said if reason is None and said else None


def _decode_once(
    model: Any, encoder_output: Any, tokenizer: Any, options: Any, budget: int, *, timestamps: bool
) -> Any:
    """One greedy decode of ``encoder_output`` within ``budget`` tokens, with faster-whisper's own
    ``generate_with_fallback`` at a single temperature (our fallback is the padded decode)."""
    once = dataclasses.replace(
        options, temperatures=[0.0], max_new_tokens=budget, without_timestamps=not timestamps
    )
    prompt = model.get_prompt(tokenizer, [], without_timestamps=not timestamps)
    return model.generate_with_fallback(encoder_output, prompt, tokenizer, once)


def said_once(first: str, again: str) -> bool:
    """Whether ``again`` says what ``first`` said: the same words, or ``first`` saying them over
    and over (a loop, maybe cut short). Case and punctuation aside."""
    unit, words = _words(again), _words(first)
    if not unit or words[: len(unit)] != unit:
        return False
    while words[: len(unit)] == unit:
        words = words[len(unit) :]
    if not words:
        return True
    said = unit[: len(words)]  # what is left: the start of one more saying, its last word cut
    return len(said) == len(words) and said[:-1] == words[:-1] and said[-1].startswith(words[-1])


_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # written without spaces
_WORD = re.compile(f"[{_CJK}]|[^\\W{_CJK}]+")


def _words(text: str) -> list[str]:
    """Words without punctuation or case; each Han or kana character counts as one."""
    return _WORD.findall(text.lower())
