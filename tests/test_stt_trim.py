"""Whisper on the utterance's own length: the guard's rules, a real clip that loops when trimmed
(and is decoded padded instead), and ordinary questions that read the same either way."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from avatar.audio.pcm import PcmAudio
from avatar.audio.resample import resample
from avatar.bench.stt import edit_distance, units
from avatar.bench.stt_set import human_en
from avatar.engines.executor import Cancelled
from avatar.engines.registry import create_engine
from avatar.engines.stt import whisper_trim as wt
from avatar.engines.stt.whisper import FasterWhisperStt, _options, _tokenizer, decode
from avatar.engines.tts.piper import PiperTts
from avatar.models.store import ModelStore
from avatar.settings import SttSettings
from avatar.testing.whisper_tokens import counting_tokens
from conftest import say_en

QUESTIONS = [
    "What is the capital of France?",
    "How many days are there in a week?",
    "What do bees make?",
    "Is water wet or dry?",
]


@pytest.fixture(scope="module")
def engine(model_store: ModelStore) -> Iterator[FasterWhisperStt]:
    stt = create_engine("stt", "faster-whisper", SttSettings(), model_store)
    assert isinstance(stt, FasterWhisperStt)
    stt.load()
    yield stt
    stt.shutdown()


@pytest.fixture(scope="module")
def model(engine: FasterWhisperStt) -> Any:
    return engine._model


@pytest.fixture(scope="module")
def spoken(speaker: PiperTts) -> dict[str, np.ndarray]:
    """The questions in the deterministic Piper voice, 16 kHz."""
    return {q: resample(say_en(speaker, q), 16_000).samples.astype(np.float32) for q in QUESTIONS}


# --- the guard's rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "ever tried ever tried ever tried ever",  # a short unit, three times
        "no matter . no matter .",
        "can you name a color on the sky ? can you name a color on",  # starts over, cut off
        "we had it all , we had none . we had it all , we had none .",  # said again in full
        "it was the age of wisdom , it was the age of folly . it was the age of wisdom , it was "
        "the age of folly",  # again but for its full stop
    ],
)
def test_loops_found(text: str) -> None:
    assert wt.loops(text.split())


@pytest.mark.parametrize(
    "text",
    [
        "it was the epoch of belief , it was the epoch of incredulity .",
        "it was the best of times . it was the worst of times .",
        "what is it ? it is what it is .",
        "what is the capital of france ?",
        "very very good",
        "",
    ],
)
def test_ordinary_text_is_not_a_loop(text: str) -> None:
    assert not wt.loops(text.split())


def test_only_text_that_begins_in_the_padding_is_past_the_end() -> None:
    from types import SimpleNamespace

    options = SimpleNamespace(
        compression_ratio_threshold=2.4, log_prob_threshold=-1.0, no_speech_threshold=0.6
    )
    decoded = (SimpleNamespace(no_speech_prob=0.01), -0.2, 0.0, 1.1)
    keys: list[object] = ["ever", "tried", "."]
    # a segment that begins with the speech but is closed 0.53 s into the padding
    late_close = [-1.31, 0.53]
    assert wt.guard(keys, late_close, 99, decoded, options, starts=[-1.31]) is None
    # a second segment that begins 0.4 s into the padding: words where nobody spoke
    assert wt.guard(keys, [*late_close, 0.4, 0.9], 99, decoded, options, starts=[-1.31, 0.4]) == (
        "past_end"
    )


def test_token_budget_grows_with_duration() -> None:
    assert wt.token_budget(1.0) < wt.token_budget(3.0) < wt.token_budget(10.0)
    assert wt.token_budget(3.0) >= 3 * 8  # a fast Mandarin speaker fits


def test_long_audio_is_not_trimmed(model: Any) -> None:
    assert wt.trimmable(np.zeros(25 * 16_000))
    assert not wt.trimmable(np.zeros(int(29.5 * 16_000)))
    assert wt.window(model, np.zeros(3 * 16_000, np.float32)).shape == (80, 400)


def test_the_silence_before_the_first_sound_is_cut_to_its_last_moments() -> None:
    rate = 16_000
    rng = np.random.default_rng(7)
    word = (0.3 * np.sin(np.arange(rate // 2) / 8)).astype(np.float32)
    soft = (0.02 * np.sin(np.arange(rate // 5) / 8)).astype(np.float32)  # ~-24 dB: "so"
    silence = np.zeros(rate, np.float32)

    cut = wt.without_lead(np.concatenate([silence, word]))
    assert len(cut) == int((wt.LEAD_KEPT_S + 0.5) * rate)  # 0.3 s of the second kept
    kept = wt.without_lead(np.concatenate([silence, soft, silence[:3200], word]))
    assert np.array_equal(kept[int(wt.LEAD_KEPT_S * rate) :][: len(soft)], soft)
    noisy = np.concatenate([silence, word]) + rng.normal(0, 0.05, rate + rate // 2)
    assert len(wt.without_lead(noisy.astype(np.float32))) == len(noisy)  # noise is sound too
    assert len(wt.without_lead(silence)) == rate  # nothing to find: all of it
    assert len(wt.without_lead(word)) == len(word)  # starts at once


# --- real speech ----------------------------------------------------------------------------


def test_the_guard_catches_a_real_decoder_loop(model: Any) -> None:
    # "Ever tried." (Beckett, the first 1.31 s of the moonshine-voice recording), encoded on its
    # own length and decoded without timestamps, loops: "Ever tried. Ever tried. Ever tri...".
    clip = human_en()[0]
    assert clip.reference == "Ever tried."
    encoder_output = model.encode(wt.window(model, clip.samples))
    tokenizer = _tokenizer(model, "en")
    options = _options(tokenizer, 1)
    loop = _decode_without_timestamps(model, encoder_output, tokenizer, options, clip.duration_s)
    text = [t for t in loop[0].sequences_ids[0] if t < tokenizer.eot]

    reason = wt.guard(wt.token_keys(tokenizer, text), [], 999, loop, options)

    assert units(tokenizer.decode(text), "en")[:4] == ["ever", "tried", "ever", "tried"]
    assert reason == "repetition"


def test_a_doubtful_language_that_the_conversation_speaks_is_taken(
    model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Beckett's "Try again." (1.46 s) is English at only ~0.57-0.63 on its own short window: the
    # figure depends on the CPU's int8 kernels (0.58 on one AMD VM, 0.63 on another), so the bar
    # for a doubt is set just above this machine's figure
    clip = human_en()[3]
    assert clip.reference == "Try again."
    english = wt.detect_language(model, model.encode(wt.window(model, clip.samples)))
    assert english[0] == "en" and 0.4 < english[1] < 0.8
    monkeypatch.setattr(wt, "MIN_LANGUAGE_P", english[1] + 0.05)
    alone = decode(model, clip.samples, None, 1)
    assert alone.fallback == "uncertain_language" and not alone.trimmed  # checked padded
    in_english = decode(model, clip.samples, None, 1, likely="en")
    assert in_english.trimmed and in_english.language == "en"
    assert units(in_english.text, "en") == ["try", "again"]
    # English ~0.6, German 0.12, Japanese 0.007: the conversation's language is kept unless
    # another is LIKELY_WEIGHT (10) times as probable; a doubt against it is checked padded
    in_german = decode(model, clip.samples, None, 1, likely="de")
    assert in_german.trimmed and in_german.language == "de"
    in_japanese = decode(model, clip.samples, None, 1, likely="ja")
    assert in_japanese.fallback == "uncertain_language" and in_japanese.language == "en"


def test_a_trimmed_decode_that_loops_falls_back_to_padded(
    model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same real loop, injected where the engine's own trimmed decode would be (with
    # timestamps this clip no longer loops): the padded decode must take over.
    clip = human_en()[0]
    calls = _first_reading_loops(model, monkeypatch, clip.duration_s)
    # the second look (the window read again without timestamps) reads other words
    monkeypatch.setattr(wt, "_without_timestamps", lambda *_: "Never tried.")
    out = decode(model, clip.samples, "en", 1, trim=True)

    assert calls == ["trimmed", "padded"]
    assert not out.trimmed and out.fallback in {"repetition", "token_budget"}
    assert units(out.text, "en") == ["ever", "tried"]


def test_a_loop_the_second_look_agrees_with_is_said_once(
    model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same injected loop, and the real second look: the window decoded again without
    # timestamps says "Ever tried." (then again, to its budget): the words agree, so the trimmed
    # decode keeps them once, without the ~0.7 s padded decode.
    clip = human_en()[0]
    calls = _first_reading_loops(model, monkeypatch, clip.duration_s)
    out = decode(model, clip.samples, "en", 1, trim=True)

    assert calls == ["trimmed", "trimmed"]
    assert out.trimmed and out.fallback is None and out.text == "Ever tried."
    assert out.rejected is not None and out.rejected.startswith("Ever tried. Ever tried.")


def _first_reading_loops(model: Any, monkeypatch: pytest.MonkeyPatch, duration_s: float) -> list:
    """The trimmed decode's first reading loops (the clip decoded without timestamps); later
    decodes run as they would. Returns the decodes made, "trimmed" or "padded", as they come."""
    real = model.generate_with_fallback
    calls: list[str] = []

    def looping_once(encoder_output: Any, prompt: Any, tokenizer: Any, options: Any) -> Any:
        calls.append("trimmed" if options.max_new_tokens else "padded")  # only trimmed budgets
        if len(calls) == 1:
            return _decode_without_timestamps(model, encoder_output, tokenizer, options, duration_s)
        return real(encoder_output, prompt, tokenizer, options)

    monkeypatch.setattr(model, "generate_with_fallback", looping_once)
    return calls


def _decode_without_timestamps(
    model: Any, encoder_output: Any, tokenizer: Any, options: Any, duration_s: float
) -> Any:
    once = dataclasses.replace(
        options,
        temperatures=[0.0],
        max_new_tokens=wt.token_budget(duration_s),
        without_timestamps=True,
    )
    prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
    return type(model).generate_with_fallback(model, encoder_output, prompt, tokenizer, once)


@pytest.mark.parametrize("question", QUESTIONS)
def test_ordinary_questions_read_the_same_trimmed_and_padded(
    model: Any, spoken: dict[str, np.ndarray], question: str
) -> None:
    # as the server hands it over: pre-roll before the speech, VAD hangover after it
    samples = np.concatenate([np.zeros(6_400, np.float32), spoken[question], np.zeros(8_000)])
    trimmed = decode(model, samples.astype(np.float32), None, 1, trim=True)
    padded = decode(model, samples.astype(np.float32), None, 1, trim=False)

    assert trimmed.trimmed and not padded.trimmed
    assert trimmed.language == padded.language == "en"
    assert units(trimmed.text, "en") == units(padded.text, "en") == units(question, "en")


def test_a_question_after_a_second_of_silence_is_decoded_once(
    model: Any, spoken: dict[str, np.ndarray]
) -> None:
    # The endpointer hands over up to 1 s from before the speech; on its own short window the
    # decoder then said the question two or three times over (cut to once by the guard, but
    # decoded at 2-3x the cost). Without the lead it closes its segment and stops.
    tokenizer = _tokenizer(model, "en")
    for question in QUESTIONS[:2]:
        samples = np.concatenate([np.zeros(16_000), spoken[question], np.zeros(1_600)])
        with counting_tokens(model) as generated:
            out = decode(model, samples.astype(np.float32), "en", 1, trim=True)
        words = len(tokenizer.encode(" " + question))
        assert out.trimmed and units(out.text, "en") == units(question, "en")
        assert generated == [generated[0]] and generated[0] <= words + 3  # not said again


def test_only_english_loses_its_lead(
    model: Any, spoken: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Mandarin read better with the silence before it (../shared/audio/zh): it keeps it, as does
    # a first turn whose language is not known yet.
    cut: list[int] = []
    real = wt.without_lead
    monkeypatch.setattr(wt, "without_lead", lambda s: cut.append(len(s)) or real(s))
    samples = np.concatenate([np.zeros(16_000), spoken[QUESTIONS[2]]]).astype(np.float32)
    decode(model, samples, "zh", 1)
    decode(model, samples, None, 1)
    assert cut == []
    decode(model, samples, None, 1, likely="en")
    decode(model, samples, "en", 1)
    assert cut == [len(samples)] * 2


ZH = Path(__file__).resolve().parents[1] / ".." / "shared" / "audio" / "zh"


@pytest.mark.skipif(not (ZH / "hope.wav").exists(), reason="needs shared/audio/zh")
def test_mandarin_reads_as_well_trimmed_as_padded(model: Any) -> None:
    # Greedy on the short window, whisper-base heard 希老女以后 for 希望你以后 in this recording
    # (padded: right); Mandarin's trimmed decode searches with a beam (wt.TRIMMED_BEAM).
    from avatar.bench.stt_set import read_16k

    reference = units("希望你以后能够做的比我还好呦", "zh")
    samples = read_16k(ZH / "hope.wav")
    trimmed = decode(model, samples, None, 1, trim=True)
    padded = decode(model, samples, None, 1, trim=False)

    after_english = decode(model, samples, None, 1, trim=True, likely="en")

    assert trimmed.trimmed and trimmed.language == padded.language == "zh"
    assert units(trimmed.text, "zh")[:5] == reference[:5]  # 希望你以后
    # a user who spoke English before: the clip still keeps its lead (洗澡你 without it)
    assert units(after_english.text, "zh")[:5] == reference[:5]
    errors = {
        name: edit_distance(reference, units(out.text, "zh"))
        for name, out in (("trimmed", trimmed), ("padded", padded))
    }
    assert errors["trimmed"] <= errors["padded"], errors


async def test_trim_setting_reaches_the_engine(
    engine: FasterWhisperStt, spoken: dict[str, np.ndarray]
) -> None:
    off = FasterWhisperStt.from_settings(SttSettings(trim=False), engine._models)
    off._model, off._is_loaded = engine._model, True  # the same loaded model, the other setting
    try:
        result = await off.transcribe(PcmAudio(spoken[QUESTIONS[0]], 16_000))
    finally:
        off._model = None
        off.shutdown()

    assert SttSettings().trim and not off._trim
    assert units(result.text, "en") == units(QUESTIONS[0], "en")


# --- one instance of the model per decode path, each with its own threads -------------------


@pytest.mark.parametrize(("threads", "trimmed_threads", "instances"), [(2, 1, 2), (2, None, 1)])
def test_the_trimmed_decode_gets_its_own_threads(
    model_store: ModelStore,
    monkeypatch: pytest.MonkeyPatch,
    threads: int,
    trimmed_threads: int | None,
    instances: int,
) -> None:
    import avatar.engines.stt.whisper as whisper

    made: list[int] = []
    real = whisper.WhisperModel

    def recording(*args: Any, cpu_threads: int, **kwargs: Any) -> Any:
        made.append(cpu_threads)
        return real(*args, cpu_threads=cpu_threads, **kwargs)

    monkeypatch.setattr(whisper, "WhisperModel", recording)
    settings = SttSettings(threads=threads, trimmed_threads=trimmed_threads)
    stt = FasterWhisperStt.from_settings(settings, model_store)
    stt.load()
    try:
        assert made == ([threads, trimmed_threads] if instances == 2 else [threads])
        assert (stt._trimmed is stt._model) is (instances == 1)
        stt.unload()
        assert stt._model is None and stt._trimmed is None  # both freed
    finally:
        stt.shutdown()


def test_the_padded_decode_runs_on_the_padded_instance(
    engine: FasterWhisperStt, spoken: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    trimmed, padded = engine._trimmed, engine._model
    assert trimmed is not padded  # the default settings: one thread trimmed, two padded
    encoded = _spy_on_encode(monkeypatch, trimmed, padded)
    samples = spoken[QUESTIONS[0]]

    kept = decode(trimmed, samples, "en", 1, True, None, padded)
    assert (kept.trimmed, encoded) == (True, ["trimmed"])

    encoded.clear()
    sent_back = wt.TrimmedResult(None, "en", 0.0, "repetition", "what is what is")
    monkeypatch.setattr(wt, "decode_trimmed", lambda *_: sent_back)
    fallback = decode(trimmed, samples, "en", 1, True, None, padded)
    assert (fallback.trimmed, fallback.fallback, encoded) == (
        False,
        "repetition",
        ["trimmed", "padded"],
    )
    assert units(fallback.text, "en") == units(QUESTIONS[0], "en")


def test_a_transcript_nobody_waits_for_stops_after_its_encoder(
    engine: FasterWhisperStt, spoken: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    trimmed, padded = engine._trimmed, engine._model
    encoded = _spy_on_encode(monkeypatch, trimmed, padded)
    decoded: list[float] = []
    monkeypatch.setattr(wt, "decode_trimmed", lambda *args: decoded.append(args[-1]))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        decode(trimmed, spoken[QUESTIONS[0]], "en", 1, True, None, padded, cancel)
    assert encoded == ["trimmed"] and decoded == []  # neither its decoder nor the padded pass


async def test_a_held_reply_dropped_mid_transcript_frees_whisper_at_once(
    engine: FasterWhisperStt, spoken: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The user went on speaking while the trimmed decode ran, and it was then sent back: the
    # ~1 s padded pass would make the next pause's transcript wait behind it.
    encoded = _spy_on_encode(monkeypatch, engine._trimmed, engine._model)
    decoding, sent_back_now = threading.Event(), threading.Event()

    def slow_then_sent_back(*_: Any) -> wt.TrimmedResult:
        decoding.set()
        sent_back_now.wait(10)
        return wt.TrimmedResult(None, "en", 0.0, "repetition", "what is what is")

    monkeypatch.setattr(wt, "decode_trimmed", slow_then_sent_back)
    held = asyncio.create_task(engine.transcribe(PcmAudio(spoken[QUESTIONS[0]], 16_000)))
    assert await asyncio.to_thread(decoding.wait, 10)
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    sent_back_now.set()
    await engine.run(lambda: None)  # the engine thread is free again
    assert encoded == ["trimmed"]


def _spy_on_encode(monkeypatch: pytest.MonkeyPatch, trimmed: Any, padded: Any) -> list[str]:
    """Which instance's encoder ran, in order."""
    encoded: list[str] = []
    for name, instance in (("trimmed", trimmed), ("padded", padded)):
        monkeypatch.setattr(
            instance,
            "encode",
            lambda features, real=instance.encode, name=name: (
                encoded.append(name) or real(features)
            ),
        )
    return encoded


# --- the benchmark command's bad input -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--groups", "questions,nope"], "unknown group(s) ['nope']"),
        (["--groups", "human-zh", "--zh-dir", "/nonexistent"], "no Mandarin clips at"),
    ],
)
def test_bench_stt_refuses_bad_input_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "stt.json"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "avatar"), "bench", "stt", *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )

    assert proc.returncode == 1
    assert message in proc.stderr
    assert not out.exists()


def test_a_second_reading_agrees_only_with_the_same_words() -> None:
    assert wt.said_once("No matter.", "no matter")
    assert wt.said_once("try again try again try again try", "Try again.")
    assert wt.said_once("Ever tried. Ever tried. Ever tri", "Ever tried.")
    assert not wt.said_once("Fair better", "Fail better.")
    assert not wt.said_once("No matter.", "No.")  # a part of it is not what was said
    assert not wt.said_once("No matter.", "No matter, again.")
    assert not wt.said_once("No matter.", "...")
    assert wt.said_once("你好吗你好吗你", "你好吗？")  # Han characters count one by one
    assert not wt.said_once("你好吗", "你好")


def test_a_question_said_twice_keeps_its_first_saying() -> None:
    # what trimmed decodes of 4 of the 10 benchmark questions said (docs/benchmarks/stt.json)
    assert wt.repeated_sentence("What do bees make? What do bees make?") == "What do bees make?"
    assert wt.repeated_sentence("Is water wet? Is water w") == "Is water wet?"
    assert wt.repeated_sentence("你好吗？你好吗？") == "你好吗？"
    # said again with another closing mark (a held reply's transcript at a pause, round 13)
    said = "who wrote the playwriting. Who wrote the playwriting?"
    assert wt.repeated_sentence(said) == "who wrote the playwriting."
    # parallel clauses, two different sentences, and a real loop without an end are not that
    assert wt.repeated_sentence("It was the best of times, it was the worst of times") is None
    assert wt.repeated_sentence("Hello. How are you?") is None
    assert wt.repeated_sentence("Ever tried. Ever tried. Ever tri") == "Ever tried."
