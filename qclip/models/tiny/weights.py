"""The tiny models' trained weights: trained once on the synthetic world and cached (safetensors).

``qclip prepare`` calls :func:`prepare`; loading a ``tiny:`` spec calls :func:`tiny_weights`, which trains
on demand. Both are deterministic and cached, so the second call is a no-op.
"""

from __future__ import annotations

import os

from ...cache import Cache, library_versions
from ...data.synthetic.location import ensure_world, world_root

__all__ = ["tiny_weights", "tiny_weights_key", "prepare"]


def _tiny_parts(name: str, cache: Cache) -> dict:
    from dataclasses import asdict

    from .model import TINY_MODELS

    versions = library_versions()
    return {"spec": asdict(TINY_MODELS[name]), "world": world_root(cache).name, "torch": versions["torch"],
            "open_clip": versions["open_clip_torch"], "transformers": versions["transformers"]}


def tiny_weights_key(name: str, cache: Cache) -> str:
    """The cache key of a tiny model's weights, computed without training it."""
    return cache.key("tiny-weights", _tiny_parts(name, cache))


def tiny_weights(name: str, cache: Cache, progress: bool = True):
    """State dict of the tiny model ``name``, trained once on the world and cached (safetensors)."""
    from .model import TINY_MODELS, train_tiny

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
    from .model import TINY_MODELS, train_tiny_many

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
