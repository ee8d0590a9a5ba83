"""A GGUF chat model requantized by llama.cpp's own quantizer, for the CPU kernels it has.

llama.cpp repacks some weight types at load into layouts its x86 (AVX2) matrix kernels read fast
(``CPU_REPACK``): Q4_0, IQ4_NL and Q4_K, the latter only in rows of 256 weights. Qwen2.5-0.5B's
rows are 896 weights wide, so its packaged Q4_K_M file is mostly Q5_0 (133 of 169 matrices), which
has no repacked kernel: 28 MB of it is repacked. Requantized to IQ4_NL, 183 MB is, and on a 2-core
AMD VM the model read a user's 15 words in 125 ms instead of 180 and decoded a token in 19 ms
instead of 28 (docs/BENCHMARKS.md, round 10). Its output matrix (896 x 151,936, read whole for
every token) stays out of the repacked kernels whatever its type; llama.cpp keeps it Q8_0 (145 MB),
and as Q5_0 (94 MB) a token took ~9 % less on a 2-core Intel VM with answers as good (round 11).
The format fixes the result's size; its sha256 may differ with a llama.cpp compiled for another
CPU, so the store checks the size and records the hash of the file it made (see
``catalog.Requantized``).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from avatar.errors import ModelError

FTYPES = ("IQ4_NL", "Q4_0")  # llama.cpp's LLAMA_FTYPE_MOSTLY_* names this catalog uses
OUTPUT_TYPES = ("Q5_0", "Q8_0")  # GGML_TYPE_* names for the output matrix


def requantize(
    src: Path,
    dest: Path,
    ftype: str,
    *,
    output_type: str | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Write ``src`` requantized to ``ftype`` at ``dest``, its output matrix (the tied embedding
    where there is none) in ``output_type`` (None: llama.cpp's choice for ``ftype``);
    ``on_bytes(written)`` as it goes."""
    import llama_cpp

    if ftype not in FTYPES:
        raise ValueError(f"unknown llama.cpp file type {ftype!r}; use one of {FTYPES}")
    if output_type is not None and output_type not in OUTPUT_TYPES:
        raise ValueError(f"unknown output tensor type {output_type!r}; use one of {OUTPUT_TYPES}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    if output_type is not None:
        params.output_tensor_type = getattr(llama_cpp, f"GGML_TYPE_{output_type}")
    params.allow_requantize = True  # the source is already quantized
    result: list[int] = []

    def run() -> None:
        result.append(llama_cpp.llama_model_quantize(bytes(src), bytes(dest), ctypes.byref(params)))

    quiet = logging.getLogger("llama-cpp-python")  # its log callback prints every tensor
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        worker = threading.Thread(target=run, name="requantize", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.25)
            if on_bytes is not None and dest.exists():
                on_bytes(dest.stat().st_size)
    finally:
        quiet.setLevel(level)
    if result != [0]:
        raise ModelError(
            f"llama.cpp could not requantize {src.name} to {ftype}",
            hint="check the disk has room for it, then run: avatar models verify",
            code="model_requantize_failed",
        )
