"""Where the embedded default's synthetic world lives in the cache, and building it once on demand.

``qclip prepare`` and the fixtures call :func:`ensure_world`; it is deterministic and file-locked, so
the second call is a no-op.
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock

from ...cache import Cache

__all__ = ["WORLD_SEED", "WORLD_SIZE", "world_root", "ensure_world"]

WORLD_SEED = 0
WORLD_SIZE = os.environ.get("QCLIP_WORLD_SIZE", "default")


def world_root(cache: Cache, size: str | None = None, seed: int = WORLD_SEED) -> Path:
    from .world import GENERATOR_VERSION

    return cache.root / "world" / f"v{GENERATOR_VERSION}-seed{seed}-{size or WORLD_SIZE}"


def ensure_world(cache: Cache, size: str | None = None, seed: int = WORLD_SEED, progress: bool = True) -> Path:
    """Generate the synthetic world once (file-locked, idempotent) and return its root."""
    from .world import generate_world, world_is_complete

    root = world_root(cache, size, seed)
    if world_is_complete(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if not world_is_complete(root):
            generate_world(root, seed=seed, size=size or WORLD_SIZE, progress=progress)
    return root
