"""Coverage-guided fuzzing (atheris/libFuzzer) of the parsers that take untrusted bytes.

Each target in tests/fuzz/ runs in a subprocess for a bounded number of inputs, seeded with valid
files and messages; any exception other than AvatarError/ProtocolError, a native crash, an
input slower than 10 s or over 2 GB of memory fails the test with the traceback and the saved
input. Longer runs: see docs/RELIABILITY.md ("Fuzzing").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from avatar.audio.decode import decode_audio
from avatar.errors import AvatarError
from fuzz.crashers import CRASHERS

pytest.importorskip("atheris")  # x86_64 only (see pyproject's dev group)

FUZZ = Path(__file__).parent / "fuzz"


def run_fuzzer(target: str, work: Path, *options: str) -> None:
    corpus = work / "corpus"
    corpus.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(FUZZ / target),
            str(corpus),
            "-timeout=10",
            # Linux keeps ru_maxrss across fork and exec, so the child starts out "using" the
            # pytest parent's peak (2.3 GB with the models loaded in a full run): the RSS limit
            # must sit above that; single allocations are still capped at 2 GB.
            "-rss_limit_mb=8192",
            "-malloc_limit_mb=2048",
            "-max_len=65536",
            f"-artifact_prefix={work}/",
            "-print_final_stats=1",
            *options,
        ],
        cwd=work,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=600,
        check=False,
    )
    saved = sorted(p.name for p in work.iterdir() if p.name.startswith(("crash-", "timeout-")))
    assert proc.returncode == 0, f"{target} failed; inputs saved: {saved}\n{proc.stderr[-4000:]}"
    assert "Done" in proc.stderr and "stat::number_of_executed_units" in proc.stderr


def test_audio_decoder_survives_fuzzing(tmp_path: Path) -> None:
    run_fuzzer("fuzz_decode.py", tmp_path, "-runs=20000", "-max_total_time=60")


def test_websocket_parsers_survive_fuzzing(tmp_path: Path) -> None:
    run_fuzzer("fuzz_ws.py", tmp_path, "-runs=1000000", "-max_total_time=30")


# --- inputs the fuzzer found, kept as regression cases ---------------------------------------


@pytest.mark.parametrize("name", list(CRASHERS))
def test_fuzzer_findings_raise_avatar_errors(name: str) -> None:
    try:
        decode_audio(CRASHERS[name]())
    except AvatarError as exc:
        assert exc.http_status in (413, 415, 422)
