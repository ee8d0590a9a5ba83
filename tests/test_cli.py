"""The one-shot CLI with the real embedded models, and its errors (never a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import avatar
from avatar.audio.decode import decode_audio
from avatar.audio.encode import encode_wav
from avatar.engines.tts.piper import PiperTts
from conftest import MODEL_CACHE, say_en

BIN = Path(sys.executable).parent / "avatar"


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "AVATAR_MODELS__CACHE_DIR": str(MODEL_CACHE),
        "AVATAR_LLM__TEMPERATURE": "0",
        **(env or {}),
    }
    return subprocess.run(
        [str(BIN), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory, speaker: PiperTts) -> Path:
    """The question in Piper's voice without its random noise: `avatar say` draws new noise on
    every run, and Whisper base hears "capital of friends" in some of those (seen in CI)."""
    out = tmp_path_factory.mktemp("cli") / "question.wav"
    out.write_bytes(encode_wav(say_en(speaker, "How many days are there in a week?")))
    return out


def test_say_writes_speech(tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    result = run("say", "What is the capital of France?", "-o", str(out))
    assert result.returncode == 0, result.stderr
    audio = decode_audio(out.read_bytes(), target_rate=None)
    assert audio.duration_s > 1.0 and float(abs(audio.samples).max()) > 0.1
    assert "wrote" in result.stderr


def test_transcribe_gives_the_words_back(spoken: Path) -> None:
    result = run("transcribe", str(spoken))
    assert result.returncode == 0, result.stderr
    assert "days are there in a week" in result.stdout.lower()
    assert "transcribed in" in result.stderr  # the time taken, labelled


def test_ask_streams_an_answer() -> None:
    result = run("ask", "What is the capital of France?")
    assert result.returncode == 0, result.stderr
    assert "paris" in result.stdout.lower()


def test_talk_does_a_whole_voice_turn(spoken: Path, tmp_path: Path) -> None:
    reply = tmp_path / "reply.wav"
    result = run("talk", str(spoken), "-o", str(reply))
    assert result.returncode == 0, result.stderr
    said, answered = result.stdout.lower().splitlines()[:2]
    assert "days are there in a week" in said and answered.startswith("avatar:")
    assert "seven" in answered or "7" in answered, answered
    check = run("transcribe", str(reply))  # the reply audio says the reply text
    assert "seven" in check.stdout.lower() or "7" in check.stdout, check.stdout


def test_say_in_chinese(tmp_path: Path) -> None:
    out = tmp_path / "zh.wav"
    result = run("say", "今天天气很好", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"this is plain text, not audio at all", "unsupported audio format"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "PNG"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "corrupt"),
    ],
)
def test_bad_audio_gives_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    result = run("transcribe", str(bad))
    assert result.returncode == 1
    assert message.lower() in result.stderr.lower()
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_file_and_missing_model(tmp_path: Path) -> None:
    missing = run("transcribe", str(tmp_path / "nope.wav"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    no_model = run("ask", "hi", env={"AVATAR_LLM__MODEL": str(tmp_path / "absent.gguf")})
    assert no_model.returncode == 1 and "does not exist" in no_model.stderr
    assert "Traceback" not in no_model.stderr


def test_invalid_settings_are_reported_by_name() -> None:
    result = run("config", "show", env={"AVATAR_SERVER__PORT": "70000"})
    assert result.returncode == 1 and "AVATAR_SERVER__PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_show_redacts_secrets() -> None:
    result = run("config", "show", "--json", env={"AVATAR_API_TOKEN": "super-secret-token-123456"})
    assert result.returncode == 0 and "super-secret" not in result.stdout and "***" in result.stdout


def test_models_list_and_verify() -> None:
    listed = run("models", "list")
    assert listed.returncode == 0 and "whisper-base" in listed.stdout
    verified = run("models", "verify", "whisper-base", "smollm2-135m-instruct")
    assert verified.returncode == 0 and verified.stdout.count("ok") == 2


def test_doctor_checks_the_machine(tmp_path: Path) -> None:
    result = run("doctor", env={"AVATAR_DATA_DIR": str(tmp_path), "AVATAR_SERVER__PORT": "1"})
    assert "engine packages" in result.stdout and "gpus" in result.stdout
    assert result.returncode == 0, result.stdout


def test_version() -> None:
    assert run("version").stdout.strip() == avatar.__version__
