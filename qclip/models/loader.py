"""Resolve a model spec to a loaded :class:`~qclip.models.base.ClipModel`, offline."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..cache import Cache
from ..errors import ModelUnavailable
from .base import ClipModel, ModelInfo
from .specs import ModelSpec, parse_spec

__all__ = ["load_model", "check_available", "weights_digest", "weights_digest_for"]


def weights_digest(path: str) -> str:
    """A cheap content digest of a weights file or folder: sha256 over names, sizes and the first and
    last MiB of each file (hashing a 1.7 GB L/14 checkpoint in full on every run is not worth it)."""
    h = hashlib.sha256()
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read())
    return h.hexdigest()[:16]


def weights_digest_for(spec: ModelSpec | str, cache: Cache | None = None) -> str:
    """The weights digest of a spec without loading the model (tiny: its training-cache key)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.backend == "random":  # deterministic given the spec and torch's initialisers
        import torch

        return hashlib.sha256(f"{spec.spec}:{torch.__version__}".encode()).hexdigest()[:16]
    if spec.backend == "tiny":
        from .tiny.planted import planted_digest
        from .tiny.weights import tiny_weights_key

        return planted_digest(spec.ref, tiny_weights_key(spec.ref, cache or Cache()))
    if spec.backend == "open_clip":
        from .open_clip_backend import resolve_open_clip_weights

        arch, _, tag = spec.ref.partition("/")
        return weights_digest(resolve_open_clip_weights(arch, tag)[0])
    if os.path.isdir(spec.ref):
        return weights_digest(spec.ref)
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(spec.ref, "config.json")
    if not isinstance(hit, str):
        raise ModelUnavailable(f"hf:{spec.ref}: not in the Hugging Face cache")
    return weights_digest(str(Path(hit).parent))


def check_available(spec: ModelSpec | str) -> tuple[bool, str]:
    """(True, '') when the weights can be loaded offline, else (False, where it looked)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    try:
        if spec.backend == "open_clip":
            from .open_clip_backend import resolve_open_clip_weights

            arch, _, tag = spec.ref.partition("/")
            resolve_open_clip_weights(arch, tag)
        elif spec.backend == "hf":
            from huggingface_hub import constants

            if not os.path.isdir(spec.ref):
                from huggingface_hub import try_to_load_from_cache

                hit = try_to_load_from_cache(spec.ref, "config.json")
                if not isinstance(hit, str):
                    return False, (f"hf:{spec.ref}: weights not found offline; looked in: "
                                   f"{constants.HF_HUB_CACHE}/models--{spec.ref.replace('/', '--')}")
    except ModelUnavailable as exc:
        return False, str(exc)
    return True, ""


def _tiny(spec: ModelSpec, cache: Cache, progress: bool) -> ClipModel:
    from .hf_backend import HFClipModel
    from .open_clip_backend import OpenClipModel
    from .tiny import TINY_MODELS, build_tiny_module, tiny_preprocess, tiny_tokenizer
    from .tiny.planted import apply_planted, planted_digest
    from .tiny.weights import tiny_weights

    tspec = TINY_MODELS[spec.ref]
    state, key = tiny_weights(spec.ref, cache, progress=progress)
    module = build_tiny_module(tspec)
    module.load_state_dict(state)
    apply_planted(module, spec.ref)  # activation outliers, the source's confidence (tiny/planted.py)
    info = ModelInfo(spec=spec.spec, backend=f"tiny/{tspec.family}", arch=spec.ref,
                     source=str(cache.entry_dir("tiny-weights", key)), weights_digest=planted_digest(spec.ref, key))
    cls = HFClipModel if tspec.family == "hf" else OpenClipModel
    return cls(module, tiny_tokenizer(tspec), tiny_preprocess(tspec), info)


def load_model(spec: ModelSpec | str, cache: Cache | None = None, progress: bool = True) -> ClipModel:
    """Load ``spec`` in fp32 on CPU. Raises :class:`ModelUnavailable` (a skip reason) when absent."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.backend == "tiny":
        return _tiny(spec, cache or Cache(), progress)
    if spec.backend == "random":
        from .random_init import random_hf, random_open_clip
        from .specs import parse_random

        family, arch, tiny, seed = parse_random(spec.ref)
        model = (random_open_clip if family == "open_clip" else random_hf)(arch, tiny=tiny, seed=seed)
        model.info.spec = spec.spec
        return model
    if spec.backend == "open_clip":
        from .open_clip_backend import load_open_clip

        arch, _, tag = spec.ref.partition("/")
        return load_open_clip(arch, tag, spec.spec, weights_digest)
    from .hf_backend import load_hf

    return load_hf(spec.ref, spec.spec, weights_digest)
