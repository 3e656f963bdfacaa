"""Atomic, self-describing, verifiable checkpoints of a worker's learned state.

A checkpoint is a directory ``ckpt-<sequence>`` holding the files a writer put there plus a
``manifest.json`` that names the model version, the config digest, the library versions, the Kafka
offsets the state corresponds to, and the SHA-256 of every file.  It is written under a temporary name,
fsynced and renamed into place, so a reader sees a whole checkpoint or none.  ``latest()`` returns the
newest checkpoint whose files all match their digests: a truncated or corrupt one is skipped with a log
line.  Nothing in a checkpoint is executable (safetensors, ``.npy`` without pickle, JSON).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fusionrec.errors import CheckpointError

log = logging.getLogger(__name__)

__all__ = ["Checkpoint", "CheckpointStore", "library_versions"]

MANIFEST = "manifest.json"
FORMAT = 1
LIBRARIES = ("fusionrec", "numpy", "torch", "transformers", "faiss-cpu", "safetensors", "faust-streaming", "aiokafka")


def library_versions() -> dict[str, str]:
    return dict(_library_versions())


@functools.cache
def _library_versions() -> dict[str, str]:
    """Read once: the installed versions do not change under a running process (scanning the package
    metadata at every checkpoint was a seventh of the checkpoint thread's time)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    manifest: dict[str, Any]

    @property
    def sequence(self) -> int:
        return int(self.manifest["sequence"])

    @property
    def offsets(self) -> dict[str, dict[str, int]]:
        """``{topic: {partition: next offset to read}}``."""
        return self.manifest.get("offsets", {})

    @property
    def model_version(self) -> str:
        return str(self.manifest["model_version"])

    @property
    def created_at(self) -> float:
        return float(self.manifest["created_at"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    for directory in [*sorted(p for p in root.rglob("*") if p.is_dir()), root, root.parent]:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class CheckpointStore:
    """Checkpoints under ``root``; the newest ``keep`` are kept."""

    def __init__(self, root: str | Path, *, keep: int = 3) -> None:
        if keep < 1:
            raise CheckpointError(f"keep must be >= 1, got {keep}")
        self.root = Path(root).expanduser()
        self.keep = keep

    def _directories(self) -> list[Path]:
        if not self.root.exists():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("ckpt-")]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]) if p.name.split("-")[1].isdigit() else -1)

    def write(
        self,
        write_files: Callable[[Path], None],
        *,
        model_version: str,
        config_digest: str,
        offsets: Mapping[str, Mapping[int | str, int]],
        extra: Mapping[str, Any] | None = None,
    ) -> Checkpoint:
        """Let ``write_files`` fill a fresh directory, then describe, seal and publish it atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        existing = self._directories()
        sequence = (int(existing[-1].name.split("-")[1]) + 1) if existing else 1
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=self.root))
        try:
            write_files(tmp)
            files = {
                str(p.relative_to(tmp)): {"sha256": _sha256(p), "bytes": p.stat().st_size}
                for p in sorted(tmp.rglob("*"))
                if p.is_file()
            }
            manifest = {
                "format": FORMAT,
                "sequence": sequence,
                "created_at": time.time(),
                "model_version": model_version,
                "config_digest": config_digest,
                "libraries": library_versions(),
                "offsets": {t: {str(p): int(o) for p, o in parts.items()} for t, parts in offsets.items()},
                "files": files,
                **(extra or {}),
            }
            (tmp / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
            _fsync_tree(tmp)
            final = self.root / f"ckpt-{sequence:08d}"
            os.rename(tmp, final)
            _fsync_tree(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._prune()
        log.info("checkpoint %s written (%d files)", final.name, len(files))
        return Checkpoint(final, manifest)

    def _prune(self) -> None:
        for old in self._directories()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        for tmp in self.root.glob(".tmp-ckpt-*"):
            if time.time() - tmp.stat().st_mtime > 3600:  # left by a crash long ago
                shutil.rmtree(tmp, ignore_errors=True)

    def verify(self, path: Path) -> Checkpoint:
        """The checkpoint at ``path`` if its manifest parses and every file matches; else CheckpointError."""
        try:
            manifest = orjson.loads((path / MANIFEST).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise CheckpointError(f"{path.name}: unreadable manifest ({exc})") from exc
        if manifest.get("format") != FORMAT:
            raise CheckpointError(f"{path.name}: format {manifest.get('format')!r}, this version reads {FORMAT}")
        for name, meta in manifest.get("files", {}).items():
            file = path / name
            if not file.is_file() or file.stat().st_size != meta["bytes"] or _sha256(file) != meta["sha256"]:
                raise CheckpointError(f"{path.name}: {name} is missing, truncated or corrupt")
        return Checkpoint(path, manifest)

    def latest(self) -> Checkpoint | None:
        """The newest valid checkpoint; corrupt or partial ones are skipped with a warning."""
        for path in reversed(self._directories()):
            try:
                return self.verify(path)
            except CheckpointError as exc:
                log.warning("skipping checkpoint: %s", exc)
        return None

    def all(self) -> list[Path]:
        return self._directories()
