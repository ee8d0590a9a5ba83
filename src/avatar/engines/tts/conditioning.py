"""Per-profile conditioning for the cloning TTS engines, computed once and cached.

A cloning engine speaks "as" a voice profile from its reference recording and reference text.
Preparing that reference (resampling to the engine's rate, trimming silence and length, writing
the WAV file the libraries read, normalising the text) and the features a library derives from
it (CosyVoice: speech tokens, speaker embedding, mel features) would cost tens to hundreds of
milliseconds on every sentence. :class:`ConditioningCache` does it once per key: the profile id,
the engine, and a hash of the reference audio *and* text (an edited reference text must not reuse
the old conditioning). Entries live in memory, least recently used dropped past ``max_items``,
and on disk when a folder is given (``<data_dir>/conditioning/<engine>/<key>.wav`` + ``.json``),
so a restart reuses prepared references; without a folder the files go to a private temp folder
removed by :meth:`ConditioningCache.close`. Library-side state derived from an entry (a speaker
registered in the model) is the engine's, released through ``on_evict``.

Also here: the small pieces of glue both cloning engines share (optional import naming the
extra, library output to :class:`PcmAudio`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import soundfile as sf

from avatar.audio.edges import FRAME_S, frame_dbfs, sound_span
from avatar.audio.encode import encode_wav
from avatar.audio.pcm import PcmAudio
from avatar.audio.resample import resample
from avatar.engines.base import VoiceRef
from avatar.errors import AudioError, EmptyAudio, EngineUnavailable

EDGE_PAD_S = 0.05
MIN_REFERENCE_S = 0.5
_SAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class ConditioningKey:
    profile_id: str
    engine: str
    digest: str  # sha256 of the reference audio and text

    @property
    def name(self) -> str:
        profile = _SAFE.sub("_", self.profile_id)[:64] or "profile"
        return f"{profile}-{self.digest[:16]}"


@dataclass(frozen=True, slots=True)
class Reference:
    """A reference voice as a profile (or a configured file) gives it, before preparation."""

    profile_id: str
    label: str
    audio: PcmAudio
    text: str


@dataclass(frozen=True, slots=True)
class Conditioning:
    """A reference prepared for one engine: its WAV file, its text, and how it was made."""

    key: ConditioningKey
    path: Path  # mono 16-bit WAV at ``sample_rate``
    text: str
    sample_rate: int
    duration_s: float
    trimmed: bool  # cut to the engine's longest reference: the text may say more than the audio


def reference_digest(audio: PcmAudio, text: str) -> str:
    digest = hashlib.sha256(f"{audio.sample_rate}\n{text}\n".encode())
    digest.update(np.ascontiguousarray(audio.samples, dtype=np.float32).tobytes())
    return digest.hexdigest()


def reference_from_voice(voice: VoiceRef | None) -> Reference | None:
    """The profile reference in ``voice`` (None when it carries no reference audio)."""
    if voice is None or voice.reference_audio is None:
        return None
    profile_id = str(voice.conditioning.get("profile_id") or "adhoc")
    label = str(voice.conditioning.get("profile_name") or profile_id)
    return Reference(profile_id, label, voice.reference_audio, (voice.reference_text or "").strip())


def reference_from_file(path: Path, text: str | None = None) -> Reference:
    """A reference WAV/FLAC file; its text from ``text`` or a ``.txt`` file beside it."""
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as exc:
        raise EngineUnavailable(
            f"cannot read the reference voice file {path.name}: {exc}",
            hint="point the voice setting at a readable WAV or FLAC file",
        ) from exc
    if text is None:
        sidecar = path.with_suffix(".txt")
        text = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else ""
    audio = PcmAudio(np.ascontiguousarray(samples.mean(axis=1), dtype=np.float32), int(rate))
    return Reference(f"file:{path.name}", path.stem, audio, text)


def prepare_reference(audio: PcmAudio, rate: int, *, max_s: float) -> tuple[PcmAudio, bool]:
    """``audio`` at ``rate`` with silent edges removed and at most ``max_s`` long.

    A longer reference is cut at the quietest 20 ms in the last 40% of the allowed length (a
    pause, not mid-word); the second value says whether it was cut.
    """
    resampled = resample(audio, rate)
    samples = np.ascontiguousarray(resampled.samples, dtype=np.float32)
    span = sound_span(samples, rate)
    if span is None:
        raise EmptyAudio("the reference recording is silent", hint="record the voice profile again")
    pad = int(EDGE_PAD_S * rate)
    samples = samples[max(0, span[0] - pad) : min(len(samples), span[1] + pad)]
    frame = max(1, int(FRAME_S * rate))
    limit = int(max_s * rate)
    trimmed = len(samples) > limit
    if trimmed:
        window = frame_dbfs(samples[:limit], frame)
        low = int(0.6 * len(window))
        samples = samples[: (low + int(np.argmin(window[low:]))) * frame]
    if len(samples) < MIN_REFERENCE_S * rate:
        raise AudioError(
            f"the reference recording holds {len(samples) / rate:.2f} s of sound",
            code="voice_reference_too_short",
            hint="record at least 3 s of clear speech for the voice profile",
        )
    return PcmAudio(samples, rate), trimmed


# --- the cache ---------------------------------------------------------------------------------

Prepare = Callable[[], tuple[PcmAudio, str, bool]]


class ConditioningCache:
    """Prepared references by key: in memory (LRU) and, with ``folder``, on disk."""

    def __init__(
        self,
        folder: Path | None = None,
        *,
        max_items: int = 64,
        on_evict: Callable[[Conditioning], None] | None = None,
    ) -> None:
        self.persistent = folder is not None
        self._folder = folder
        self.max_items = max_items
        self.on_evict = on_evict
        self.stats = {"memory_hits": 0, "disk_loads": 0, "computed": 0, "evicted": 0}
        self._items: OrderedDict[ConditioningKey, Conditioning] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[ConditioningKey, threading.Lock] = {}

    @property
    def folder(self) -> Path:
        """Where the files go; a private temp folder is made on first use when none was given."""
        with self._lock:
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="avatar-conditioning-"))
            return self._folder

    def get_or_create(self, key: ConditioningKey, prepare: Prepare) -> Conditioning:
        """The conditioning for ``key``, prepared by ``prepare()`` only if neither copy has it."""
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one preparation per key, even when asked for at once
            with self._lock:
                found = self._items.get(key)
                if found is not None:
                    self._items.move_to_end(key)
                    self.stats["memory_hits"] += 1
                    return found
            item = self._load(key)
            if item is None:
                audio, text, trimmed = prepare()
                item = self._store(key, audio, text, trimmed)
                self.stats["computed"] += 1
            else:
                self.stats["disk_loads"] += 1
            self._insert(item)
            return item

    def _paths(self, key: ConditioningKey) -> tuple[Path, Path]:
        base = self.folder / _SAFE.sub("_", key.engine) / key.name
        return base.with_suffix(".wav"), base.with_suffix(".json")

    def _load(self, key: ConditioningKey) -> Conditioning | None:
        wav, meta = self._paths(key)
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
            if data["digest"] != key.digest or not wav.is_file():
                return None
            return Conditioning(
                key,
                wav,
                str(data["text"]),
                int(data["sample_rate"]),
                float(data["duration_s"]),
                bool(data["trimmed"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or damaged: prepare again

    def _store(
        self, key: ConditioningKey, audio: PcmAudio, text: str, trimmed: bool
    ) -> Conditioning:
        wav, meta = self._paths(key)
        wav.parent.mkdir(parents=True, exist_ok=True)
        item = Conditioning(key, wav, text, audio.sample_rate, round(audio.duration_s, 3), trimmed)
        record = {**asdict(item), "path": wav.name, "key": asdict(key)}
        record["digest"] = key.digest
        _write_atomic(wav, encode_wav(audio))
        _write_atomic(meta, json.dumps(record, ensure_ascii=False, indent=1).encode())
        return item

    def _insert(self, item: Conditioning) -> None:
        with self._lock:
            self._items[item.key] = item
            self._items.move_to_end(item.key)
            evicted = []
            while len(self._items) > self.max_items:
                evicted.append(self._items.popitem(last=False)[1])
        for old in evicted:
            self._evict(old)

    def _evict(self, item: Conditioning) -> None:
        self.stats["evicted"] += 1
        if not self.persistent:  # temp files have no later use
            for path in self._paths(item.key):
                path.unlink(missing_ok=True)
        if self.on_evict is not None:
            self.on_evict(item)

    def forget_profile(self, profile_id: str) -> None:
        """Drop every entry of a profile, in memory and on disk (call when a profile is deleted)."""
        with self._lock:
            dropped = [self._items.pop(k) for k in list(self._items) if k.profile_id == profile_id]
        for item in dropped:
            if self.on_evict is not None:
                self.on_evict(item)
        own = re.compile(re.escape(_SAFE.sub("_", profile_id)[:64] or "profile") + "-[0-9a-f]{16}")
        for path in self.folder.glob("*/*"):
            if own.fullmatch(path.stem):
                path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        """Forget the memory copies; remove the folder when it was a private temp folder."""
        with self._lock:
            self._items.clear()
            folder, temporary = self._folder, not self.persistent
            if temporary:
                self._folder = None
        if temporary and folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- glue shared by the cloning engines -------------------------------------------------------


def require_library(module: str, *, engine: str, install: str) -> None:
    """Raise :class:`EngineUnavailable` naming ``install`` when ``module`` is not importable.

    Only looks the module up (no import: these libraries pull in torch, which takes seconds).
    """
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise EngineUnavailable(
            f"tts engine {engine!r} needs the Python package {module!r}",
            hint=f"install it with: {install}",
        )


def import_library(module: str, *, engine: str, install: str) -> ModuleType:
    """Import ``module``; a missing package (or a missing dependency of it) names ``install``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EngineUnavailable(
            f"tts engine {engine!r} needs the Python package {exc.name or module!r}",
            hint=f"install it with: {install}",
        ) from exc


def to_pcm(samples: Any, rate: int, target_rate: int) -> PcmAudio:
    """Library output (numpy array or torch tensor, any shape, any float type) as PcmAudio."""
    for step in ("detach", "cpu", "numpy"):
        if hasattr(samples, step):
            samples = getattr(samples, step)()
    array = np.ascontiguousarray(np.asarray(samples, dtype=np.float32).reshape(-1))
    return resample(PcmAudio(array, int(rate)), target_rate)
