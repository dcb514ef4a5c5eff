"""The tiny models' trained weights: trained once on the synthetic world and cached (safetensors).

``qclip prepare`` calls :func:`prepare`; loading a ``tiny:`` spec calls :func:`tiny_weights`, which trains
on demand. Both are deterministic and cached, so the second call is a no-op.

Each is trained in a mode (:mod:`.reproducible`: ``reproducible``, portable kernels in a subprocess, the
same bits on every x86_64 machine; or ``native``); the mode is part of the cache key (a ``native`` entry
keeps the key it had before modes existed). The entry's metadata and the world's ``world.json`` record
the weights' checksum, the mode and the CPU capability of the machine that trained them
(:func:`tiny_provenance` reads them back without training).
"""

from __future__ import annotations

import os

from ...cache import Cache, library_versions
from ...data.synthetic.location import ensure_world, world_root

__all__ = ["tiny_weights", "tiny_weights_key", "tiny_provenance", "prepare"]


def _tiny_parts(name: str, cache: Cache, mode: str) -> dict:
    from dataclasses import asdict

    from .model import TINY_MODELS

    versions = library_versions()
    parts = {"spec": asdict(TINY_MODELS[name]), "world": world_root(cache).name, "torch": versions["torch"],
             "open_clip": versions["open_clip_torch"], "transformers": versions["transformers"]}
    if mode != "native":  # native weights are what training gave before modes existed: their key is unchanged
        parts["mode"] = mode
    return parts


def tiny_weights_key(name: str, cache: Cache, mode: str | None = None) -> str:
    """The cache key of a tiny model's weights in ``mode`` (default: :func:`.reproducible.tiny_mode` of the cache),
    computed without training it."""
    from .reproducible import tiny_mode

    return cache.key("tiny-weights", _tiny_parts(name, cache, tiny_mode(mode, cache.root)))


def _train(names: list[str], root, mode: str, jobs: int, progress: bool) -> dict[str, tuple[dict, dict]]:
    """name -> (state dict, cache metadata) of each model trained in ``mode``."""
    from .model import TINY_MODELS, train_tiny, train_tiny_many
    from .reproducible import cpu_capability, machine_info, state_sha256, train_in_subprocesses

    specs = [TINY_MODELS[n] for n in names]
    if mode == "reproducible":  # the portable settings must be in place before torch loads: subprocesses
        trained = train_in_subprocesses(specs, root, mode, jobs=jobs, progress=progress)
    elif len(specs) > 1:
        # one single-thread process per core: on 2 cores this halves the wall time of training
        # (a 2-thread torch step was up to 10x slower than 1 thread under load); same weights as train_tiny
        many = train_tiny_many(specs, root, jobs=jobs, progress=progress)
        trained = {n: (many[n], {"cpu_capability": cpu_capability()}) for n in names}
    else:
        trained = {names[0]: (train_tiny(specs[0], root, progress=progress), {"cpu_capability": cpu_capability()})}
    out = {}
    for n, (state, info) in trained.items():
        meta = {"name": n, "mode": mode, "sha256": info.get("sha256") or state_sha256(state),
                "machine": machine_info(), "cpu_capability": machine_info()["cpu_capability"],
                "kernels": info.get("cpu_capability", "")}
        out[n] = (state, meta)
    return out


def _record(cache: Cache, name: str, mode: str, tensors: dict, meta: dict, key: str) -> dict:
    """The provenance of one cached model (from its metadata; an entry older than modes gets its checksum
    computed here), also written to the world's ``world.json`` when it is not there yet."""
    from ...data.synthetic.world import record_tiny_model
    from .planted import planted_answers
    from .reproducible import state_sha256

    entry = {"sha256": meta.get("sha256") or state_sha256(tensors), "mode": meta.get("mode", mode),
             "cpu_capability": meta.get("cpu_capability", "unknown"), "cache_key": key}
    entry.update(planted_answers(name))  # known answers: the outliers and confidence planted at load
    root = world_root(cache)
    if (root / "world.json").is_file():
        record_tiny_model(root, name, entry)
    return entry


def tiny_weights(name: str, cache: Cache, progress: bool = True, mode: str | None = None):
    """``(state dict, cache key)`` of the tiny model ``name`` trained in ``mode`` (default
    :func:`.reproducible.tiny_mode`), trained once on the world and cached (safetensors)."""
    from .reproducible import tiny_mode

    mode = tiny_mode(mode, cache.root)
    parts = _tiny_parts(name, cache, mode)
    if not cache.contains("tiny-weights", parts):
        ensure_world(cache, progress=progress)
    root = world_root(cache)
    key = cache.key("tiny-weights", parts)
    tensors, meta = cache.get_or_compute("tiny-weights", parts,
                                         lambda: _train([name], root, mode, 1, progress)[name])
    _record(cache, name, mode, tensors, meta, key)
    return tensors, key


def tiny_provenance(name: str, cache: Cache, mode: str | None = None) -> dict | None:
    """``{sha256, mode, cpu_capability, cache_key}`` of the cached weights of ``name`` in ``mode``, or None
    when they are not trained yet (nothing is trained here)."""
    import json

    from .reproducible import tiny_mode

    mode = tiny_mode(mode, cache.root)
    parts = _tiny_parts(name, cache, mode)
    key = cache.key("tiny-weights", parts)
    try:
        manifest = json.loads((cache.entry_dir("tiny-weights", key) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    meta = dict(manifest.get("meta", {}))
    if not meta.get("sha256"):  # an entry written before modes existed: read the weights once
        from .reproducible import state_sha256

        tensors, _ = cache.get_or_compute("tiny-weights", parts, lambda: _train([name], world_root(cache),
                                                                                mode, 1, False)[name])
        meta["sha256"] = state_sha256(tensors)
    return {"sha256": meta["sha256"], "mode": meta.get("mode", mode),
            "cpu_capability": meta.get("cpu_capability", "unknown"), "cache_key": key}


def prepare(cache: Cache, models: list[str] | None = None, progress: bool = True,
            mode: str | None = None) -> dict[str, str]:
    """Write the world and train every tiny model in ``mode`` (``qclip prepare``). Returns name -> weights key."""
    from .model import TINY_MODELS
    from .reproducible import remember_mode, tiny_mode

    mode = tiny_mode(mode, cache.root)
    remember_mode(cache.root, mode)  # the sessions on this cache load what was prepared
    root = ensure_world(cache, progress=progress)
    names = list(models or TINY_MODELS)
    missing = [n for n in names if not cache.contains("tiny-weights", _tiny_parts(n, cache, mode))]
    if len(missing) > 1:
        jobs = max(1, min(len(missing), os.cpu_count() or 1))
        trained = _train(missing, root, mode, jobs, progress)
        for n in missing:
            cache.get_or_compute("tiny-weights", _tiny_parts(n, cache, mode), lambda n=n: trained[n])
    return {n: tiny_weights(n, cache, progress=progress, mode=mode)[1] for n in names}
