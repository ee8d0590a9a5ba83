"""How the OpenMP runtimes of llama.cpp and CTranslate2 (Whisper) wait for work.

Both read these variables once, when their library loads: set them before any engine loads
(:func:`configure_openmp` at the top of the command line and of the test suite; child servers
get :data:`OPENMP_ENV`). Existing values win, so a deployment can choose its own.

- ``OMP_WAIT_POLICY=PASSIVE``: an idle OpenMP thread sleeps instead of spinning for seconds, so
  llama.cpp's threads do not starve Whisper and Piper on a small CPU (round 1 measured 5.1 vs
  14.5 tok/s for Qwen under load with the spinning default).
- ``GOMP_SPINCOUNT=1000``: but ggml waits at an OpenMP barrier after every operation of a token
  (hundreds of them), and a passive wait sleeps and is woken each time: Qwen2.5-0.5B on two
  threads decoded a token in 52-55 ms with the passive wait alone and 33-36 ms with this short
  spin first (300: 45 ms). It still sleeps soon after the work stops; under a saturating mix
  (LLM on two threads, Whisper and Piper in loops on two cores, 25 s) it cost the LLM ~6 % of its
  tokens and Whisper ~10 % of its calls, Piper nothing, where 10,000 spins cost the LLM 38 %
  (``benchmarks/openmp_wait.py``; docs/BENCHMARKS.md, round 5).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

OPENMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"}


def configure_openmp(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set :data:`OPENMP_ENV` in ``environ`` where it is not set already."""
    for name, value in OPENMP_ENV.items():
        environ.setdefault(name, value)
