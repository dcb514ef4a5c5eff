"""The embedded default: the synthetic world and the tiny model population, built on demand.

On a fresh machine with no real weights or datasets, qclip still runs a real measurement: it writes a
synthetic world in the real dataset layouts (:mod:`qclip.data.synthetic`) into the cache and trains the
tiny CLIP population on it (:mod:`qclip.models.tiny`). Both are deterministic and cached, so the second
call is a no-op. ``qclip prepare`` calls :func:`prepare`; the pytest fixtures call the same functions
lazily.
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock

from .cache import Cache, library_versions

__all__ = ["WORLD_SEED", "WORLD_SIZE", "world_root", "ensure_world", "tiny_weights", "tiny_weights_key", "prepare", "tiny_summary"]

WORLD_SEED = 0
WORLD_SIZE = os.environ.get("QCLIP_WORLD_SIZE", "default")


def world_root(cache: Cache, size: str | None = None, seed: int = WORLD_SEED) -> Path:
    from .data.synthetic import GENERATOR_VERSION

    return cache.root / "world" / f"v{GENERATOR_VERSION}-seed{seed}-{size or WORLD_SIZE}"


def ensure_world(cache: Cache, size: str | None = None, seed: int = WORLD_SEED, progress: bool = True) -> Path:
    """Generate the synthetic world once (file-locked, idempotent) and return its root."""
    from .data.synthetic import generate_world, world_is_complete

    root = world_root(cache, size, seed)
    if world_is_complete(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if not world_is_complete(root):
            generate_world(root, seed=seed, size=size or WORLD_SIZE, progress=progress)
    return root


def _tiny_parts(name: str, cache: Cache) -> dict:
    from dataclasses import asdict

    from .models.tiny import TINY_MODELS

    versions = library_versions()
    return {"spec": asdict(TINY_MODELS[name]), "world": world_root(cache).name, "torch": versions["torch"],
            "open_clip": versions["open_clip_torch"], "transformers": versions["transformers"]}


def tiny_weights_key(name: str, cache: Cache) -> str:
    """The cache key of a tiny model's weights, computed without training it."""
    return cache.key("tiny-weights", _tiny_parts(name, cache))


def tiny_weights(name: str, cache: Cache, progress: bool = True):
    """State dict of the tiny model ``name``, trained once on the world and cached (safetensors)."""
    from .models.tiny import TINY_MODELS, train_tiny

    spec = TINY_MODELS[name]
    parts = _tiny_parts(name, cache)
    if not cache.contains("tiny-weights", parts):
        ensure_world(cache, progress=progress)
    root = world_root(cache)
    tensors, _ = cache.get_or_compute("tiny-weights", parts, lambda: (train_tiny(spec, root, progress=progress),
                                                                      {"name": name}))
    return tensors, cache.key("tiny-weights", parts)


def prepare(cache: Cache, models: list[str] | None = None, progress: bool = True) -> dict[str, str]:
    """Write the world and train every tiny model (``qclip prepare``). Returns name -> weights key."""
    from .models.tiny import TINY_MODELS, train_tiny_many

    root = ensure_world(cache, progress=progress)
    names = list(models or TINY_MODELS)
    missing = [n for n in names if not cache.contains("tiny-weights", _tiny_parts(n, cache))]
    if len(missing) > 1:
        # one single-thread process per core: on 2 cores this halves the wall time of training
        # (a 2-thread torch step was up to 10x slower than 1 thread under load); same weights as train_tiny
        jobs = max(1, min(len(missing), os.cpu_count() or 1))
        trained = train_tiny_many([TINY_MODELS[n] for n in missing], root, jobs=jobs, progress=progress)
        for n in missing:
            cache.get_or_compute("tiny-weights", _tiny_parts(n, cache), lambda n=n: (trained[n], {"name": n}))
    return {n: tiny_weights(n, cache, progress=progress)[1] for n in names}


def tiny_summary(name: str, cache: Cache, progress: bool = False) -> dict[str, float]:
    """fp32 zero-shot top-1 on ``synth-imagenet`` and retrieval R@5 on ``synth-coco`` of a tiny model
    (cached like any cell's embeddings), as printed by ``qclip list --models``."""
    from . import tasks
    from .session import EmbeddingSource, QclipSession, SessionOptions

    session = QclipSession(SessionOptions(models=f"tiny:{name}", cache=str(cache.root), progress=progress))
    src = EmbeddingSource(session, f"tiny:{name}", "fp32")
    zs, _ = tasks.zeroshot(src, session.dataset("synth-imagenet"))
    rt, _ = tasks.retrieval(src, session.dataset("synth-coco"))
    return {"top1": zs["top1"], "image_R@5": rt["image_retrieval_R@5"], "text_R@5": rt["text_retrieval_R@5"]}
