"""llama-cpp-python's OpenAI-compatible server, loaded the way AVATAR's embedded engine loads.

Run with AVATAR's venv (it has ``llama-cpp-python[server]``)::

    .venv/bin/python benchmarks/llm_server.py --model <gguf> --port 8091 \
        --n_ctx 4096 --n_threads 2 --n_threads_batch 2 --model_alias qwen2.5-0.5b-instruct

Every argument goes to ``python -m llama_cpp.server``. The one difference from running that
module directly: where this llama.cpp build carries AMX kernels, the model is loaded inside
AVATAR's ``plain_cpu_weights()`` (no AMX weight buffers, no repacking), exactly as
``avatar.engines.llm.llamacpp.LlamaCppChat`` does, so the served model runs the same kernels as
AVATAR's embedded one.
"""

from __future__ import annotations

import runpy
import sys
from contextlib import nullcontext

from avatar.engines.llm.llamacpp import amx_kernels_built, plain_cpu_weights


def main() -> None:
    guard = plain_cpu_weights() if amx_kernels_built() else nullcontext()
    print(f"llm_server: AMX kernels built: {amx_kernels_built()}", file=sys.stderr, flush=True)
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    with guard:
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
