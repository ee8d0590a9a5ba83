"""The audio store: atomic writes under server-made names, and no path out of its root."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from avatar.storage import CATEGORIES, AudioStore, InvalidInput, NotFound, StorageError
from avatar.storage.audio_store import TEMP_PREFIX, TEMP_SUFFIX
from avatar.storage.errors import UnsafePath


@pytest.fixture
def store(tmp_path: Path) -> AudioStore:
    return AudioStore(tmp_path / "audio")


def test_start_creates_every_category(store: AudioStore) -> None:
    assert sorted(p.name for p in store.root.iterdir()) == sorted(CATEGORIES)


def test_save_uses_server_made_names(store: AudioStore) -> None:
    first = store.save("raw", b"RIFF1", ".wav")
    second = store.save("tts_hq", b"OggS", "OGG")
    assert re.fullmatch(r"raw/[0-9a-f]{32}\.wav", first)
    assert re.fullmatch(r"tts_hq/[0-9a-f]{32}\.ogg", second)
    assert store.path(first).read_bytes() == b"RIFF1"
    assert store.open_path(second) == store.root / second
    assert store.save("raw", b"RIFF1", ".wav") != first
    assert not [p for p in (store.root / "raw").iterdir() if p.name.startswith(TEMP_PREFIX)]


@pytest.mark.parametrize("suffix", [".exe", ".wav/../x", "", ".py", "../wav"])
def test_save_refuses_unlisted_suffixes(store: AudioStore, suffix: str) -> None:
    with pytest.raises(InvalidInput):
        store.save("raw", b"x", suffix)


def test_save_refuses_unknown_category(store: AudioStore) -> None:
    with pytest.raises(InvalidInput):
        store.save("../raw", b"x", ".wav")  # type: ignore[arg-type]


def test_failed_save_leaves_nothing_behind(store: AudioStore, monkeypatch) -> None:
    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(StorageError, match="No space left"):
        store.save("raw", b"data", ".wav")
    assert list((store.root / "raw").iterdir()) == []


@pytest.mark.parametrize(
    "rel",
    [
        "",
        "raw",
        "../secret.wav",
        "raw/../../etc/passwd",
        "raw/..",
        "/etc/passwd",
        "raw/sub/x.wav",
        "unknown/x.wav",
        "raw\\..\\..\\x.wav",
        "raw/x\x00.wav",
        "raw/with space.wav",
        "raw/" + "a" * 200 + ".wav",
    ],
)
def test_path_refuses_traversal(store: AudioStore, rel: str) -> None:
    with pytest.raises(UnsafePath):
        store.path(rel)
    with pytest.raises(UnsafePath):
        store.delete(rel)


def test_path_refuses_symlinks_out_of_the_root(store: AudioStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"secret")
    (store.root / "raw" / "link.wav").symlink_to(secret)
    with pytest.raises(UnsafePath, match="outside"):
        store.path("raw/link.wav")
    with pytest.raises(UnsafePath):
        store.delete("raw/link.wav")
    assert secret.exists()


def test_delete_is_idempotent(store: AudioStore) -> None:
    rel = store.save("exports", b"PK", ".zip")
    assert store.delete(rel) is True
    assert store.delete(rel) is False
    assert not store.path(rel).exists()
    with pytest.raises(NotFound):
        store.open_path(rel)


def test_orphans_lists_unreferenced_files_and_stale_temps(store: AudioStore) -> None:
    kept = store.save("raw", b"1", ".wav")
    orphan = store.save("tts_fast", b"2", ".wav")
    stale = store.root / "profiles" / f"{TEMP_PREFIX}old{TEMP_SUFFIX}"
    fresh = store.root / "profiles" / f"{TEMP_PREFIX}new{TEMP_SUFFIX}"
    stale.write_bytes(b"")
    fresh.write_bytes(b"")
    an_hour_ago = time.time() - 7200
    os.utime(stale, (an_hour_ago, an_hour_ago))
    assert store.orphans({kept}) == sorted([orphan, f"profiles/{stale.name}"])
    assert store.orphans({kept, orphan}, temp_age_s=0) == sorted(
        [f"profiles/{fresh.name}", f"profiles/{stale.name}"]
    )
    for rel in store.orphans({kept}):
        assert store.delete(rel)
    assert store.orphans({kept}) == []
