"""Content-addressed on-disk cache: atomic, checksummed, safe under xdist.

An entry is a folder ``<root>/<kind>/<key[:2]>/<key>/`` holding ``tensors.safetensors`` and
``manifest.json`` (the key's parts, the sha256 of the tensor file, the caller's metadata). The key is
the sha256 of the canonical JSON of its parts (model spec, weights digest, quantizer name and config,
library versions, ``CACHE_VERSION``…), so any change of config invalidates the entry.

Writes go to a temporary folder beside the entry and are renamed into place (atomic on POSIX); a file
lock per key makes concurrent workers asking for the same entry compute it once: the second waits, then
reads. A corrupt or truncated entry (checksum mismatch, unreadable file, missing manifest) is detected on
read, reported with a warning and recomputed. Nothing is ever unpickled: tensors are safetensors, metadata
is JSON.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

__all__ = ["CACHE_VERSION", "Cache", "CacheStats", "canonical_key", "default_cache_dir", "library_versions"]

#: bump when the meaning of cached artifacts changes (embedding pipeline, training recipe…)
CACHE_VERSION = 1

_TENSORS = "tensors.safetensors"
_MANIFEST = "manifest.json"


def default_cache_dir() -> Path:
    """``$QCLIP_CACHE``, else ``$XDG_CACHE_HOME/qclip``, else ``~/.cache/qclip``."""
    env = os.environ.get("QCLIP_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "qclip"


@functools.lru_cache(maxsize=1)
def _library_versions() -> tuple[tuple[str, str], ...]:
    from importlib import metadata

    out = []
    for dist in ("torch", "open_clip_torch", "transformers", "bitsandbytes", "torchao", "qclip"):
        try:
            out.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            out.append((dist, "absent"))
    return tuple(out)


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose numerics can change a cached result (read once per process)."""
    return dict(_library_versions())


def canonical_key(parts: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``parts`` (sorted keys, no whitespace)."""
    blob = json.dumps(dict(parts), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    computed: dict[str, int] = field(default_factory=dict)


class Cache:
    """A content-addressed store of tensor dictionaries under ``root``."""

    #: entries kept in memory after a read or write (per process), so the zero-shot, calibration, OOD and
    #: spectral cells of one (model, quantizer, dataset) read the embeddings from disk once
    MEMORY_BYTES = 512 << 20

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self.stats = CacheStats()
        self._memo: OrderedDict[tuple[str, str], tuple[dict, dict, int]] = OrderedDict()
        self._memo_bytes = 0

    def _remember(self, kind: str, key: str, value: tuple[dict, dict]) -> tuple[dict, dict]:
        size = sum(t.numel() * t.element_size() for t in value[0].values())
        if size <= self.MEMORY_BYTES // 4:
            old = self._memo.pop((kind, key), None)
            self._memo_bytes += size - (old[2] if old else 0)
            self._memo[(kind, key)] = (value[0], value[1], size)
            while self._memo_bytes > self.MEMORY_BYTES and self._memo:  # a running total, not a sum per entry
                self._memo_bytes -= self._memo.popitem(last=False)[1][2]
        return value

    # ----- paths -------------------------------------------------------------------------------
    def entry_dir(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / key

    def _lock(self, kind: str, key: str) -> FileLock:
        d = self.root / "locks" / kind
        d.mkdir(parents=True, exist_ok=True)
        return FileLock(str(d / f"{key}.lock"))

    # ----- read --------------------------------------------------------------------------------
    def _read(self, kind: str, key: str) -> tuple[dict[str, torch.Tensor], dict] | None:
        from safetensors.torch import load_file

        d = self.entry_dir(kind, key)
        if not d.exists():
            return None
        try:
            manifest = json.loads((d / _MANIFEST).read_text())
            tensors_path = d / _TENSORS
            if _sha256_file(tensors_path) != manifest["sha256"]:
                raise ValueError(f"checksum mismatch in {tensors_path}")
            return load_file(str(tensors_path)), manifest.get("meta", {})
        except Exception as exc:  # any unreadable entry is recomputed, never trusted
            self.stats.corrupt += 1
            warnings.warn(f"qclip cache: entry {d} is corrupt ({exc}); recomputing it", stacklevel=3)
            shutil.rmtree(d, ignore_errors=True)
            return None

    def contains(self, kind: str, parts: Mapping[str, Any]) -> bool:
        return (self.entry_dir(kind, self.key(kind, parts)) / _MANIFEST).exists()

    def key(self, kind: str, parts: Mapping[str, Any]) -> str:
        return canonical_key({"kind": kind, "cache_version": CACHE_VERSION, **parts})

    # ----- write -------------------------------------------------------------------------------
    def _write(self, kind: str, key: str, parts: Mapping[str, Any], tensors: Mapping[str, torch.Tensor],
               meta: Mapping[str, Any]) -> None:
        from safetensors.torch import save_file

        final = self.entry_dir(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:8]}-", dir=final.parent))
        try:
            clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
            save_file(clean, str(tmp / _TENSORS))
            manifest = {
                "kind": kind,
                "key": key,
                "parts": json.loads(json.dumps(dict(parts), default=str)),
                "sha256": _sha256_file(tmp / _TENSORS),
                "meta": dict(meta),
                "created": time.time(),
            }
            with open(tmp / _MANIFEST, "w") as f:
                json.dump(manifest, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    # ----- the one entry point -------------------------------------------------------------------
    def get_or_compute(
        self,
        kind: str,
        parts: Mapping[str, Any],
        compute: Callable[[], tuple[Mapping[str, torch.Tensor], Mapping[str, Any]] | Mapping[str, torch.Tensor]],
    ) -> tuple[dict[str, torch.Tensor], dict]:
        """Return ``(tensors, meta)`` for the entry, computing and storing it once if absent or corrupt.

        ``compute`` returns a tensor dict, or ``(tensors, meta)`` with JSON-able ``meta``.
        """
        key = self.key(kind, parts)
        memo = self._memo.get((kind, key))
        if memo is not None:
            self._memo.move_to_end((kind, key))
            self.stats.hits += 1
            return memo[0], memo[1]
        got = self._read(kind, key)
        if got is not None:
            self.stats.hits += 1
            return self._remember(kind, key, got)
        with self._lock(kind, key):
            got = self._read(kind, key)  # another worker may have written it while we waited
            if got is not None:
                self.stats.hits += 1
                return self._remember(kind, key, got)
            self.stats.misses += 1
            self.stats.computed[kind] = self.stats.computed.get(kind, 0) + 1
            result = compute()
            tensors, meta = result if isinstance(result, tuple) else (result, {})
            self._write(kind, key, parts, tensors, meta)
        return self._remember(kind, key, ({k: v.detach().cpu() for k, v in tensors.items()},
                                          json.loads(json.dumps(dict(meta), default=str))))

    def put(self, kind: str, parts: Mapping[str, Any], tensors: Mapping[str, torch.Tensor],
            meta: Mapping[str, Any] | None = None) -> bool:
        """Store an entry computed elsewhere, under its lock, unless it is already there (no read-back).

        Safe from a background thread (the embedder writes pixel entries while it encodes). Returns
        True when this call wrote it."""
        key = self.key(kind, parts)
        with self._lock(kind, key):
            if self.contains(kind, parts):
                return False
            self._write(kind, key, parts, tensors, dict(meta or {}))
        return True

    def path_for(self, kind: str, parts: Mapping[str, Any]) -> Path:
        """Folder of an entry (for artifacts written by others, e.g. a generated world)."""
        return self.entry_dir(kind, self.key(kind, parts))
