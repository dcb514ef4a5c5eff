"""Calibration data for quantizers that need it: image–caption pairs, a seeded sample of a proxy set.

Static activation scales, GPTQ and quantization-aware training need examples of what the model will
see. A :class:`CalibrationSet` holds ``size`` image–caption pairs drawn with a seed from a source (the
synthetic world's training pool on the embedded default, a COCO-format captions set on real data), and
yields them as model-ready batches: ``(pixels, token ids)``, preprocessed and tokenized by the model
being quantized. Its :attr:`~CalibrationSet.digest` (source, size, seed and the pairs themselves) is part
of the cache key of every quantized variant that used it.

Quantizers receive it as ``quantize(model, calibration=...)``; those that need no data ignore it, and a
third-party quantizer written against the old ``quantize(model)`` is called without it
(:func:`call_quantize`).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["CalibrationSet", "CalibrationImages", "call_quantize", "accepts_calibration", "from_training_pool", "from_retrieval_set"]


@dataclass
class CalibrationSet:
    """``size`` image–caption pairs. ``images`` are PIL images (or callables returning one, read lazily);
    ``ids`` name each pair in the digest (a file path, or a row of the training pool)."""

    source: str
    seed: int
    images: Sequence
    captions: Sequence[str]
    ids: Sequence[str]
    _digest: str | None = field(default=None, repr=False)

    def __post_init__(self):
        if not (len(self.images) == len(self.captions) == len(self.ids)):
            raise ValueError(f"Expected as many images, captions and ids, but got {len(self.images)}, "
                             f"{len(self.captions)}, {len(self.ids)}")
        if not len(self.images):
            raise ValueError(f"Expected at least one calibration pair from {self.source!r}, but got none")

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def digest(self) -> str:
        """sha256 over the source, seed, size and every (id, caption) pair: what keys the cache."""
        if self._digest is None:
            h = hashlib.sha256(f"qclip-calibration-v1\0{self.source}\0{self.seed}\0{len(self)}\0".encode())
            for i, c in zip(self.ids, self.captions, strict=True):
                h.update(f"{i}\0{c}\n".encode())
            self._digest = h.hexdigest()
        return self._digest

    def describe(self) -> dict:
        return {"source": self.source, "size": len(self), "seed": self.seed, "digest": self.digest[:16]}

    def images_dataset(self) -> CalibrationImages:
        """The images as a dataset the embedder reads (``name``, ``fingerprint()``, ``load_image(i)``), so
        their embeddings are cached like any dataset's (keyed by this set's digest)."""
        return CalibrationImages(self)

    def batches(self, model, batch_size: int = 64, device=None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(pixels, token ids)`` batches for ``model``: its own preprocessing and tokenizer."""
        device = torch.device(device or model.device)
        dtype = getattr(model, "compute_dtype", torch.float32)
        for start in range(0, len(self), batch_size):
            imgs = [im() if callable(im) else im for im in self.images[start:start + batch_size]]
            pixels = torch.stack([model.preprocess(im) for im in imgs]).to(device, dtype)
            tokens = model.tokenize(list(self.captions[start:start + batch_size])).to(device)
            yield pixels, tokens


class CalibrationImages:
    """The images of a :class:`CalibrationSet`, read the way the embedder reads a dataset."""

    def __init__(self, pairs: CalibrationSet):
        self.pairs = pairs
        self.name = f"calibration:{pairs.source}"

    def __len__(self) -> int:
        return len(self.pairs)

    def fingerprint(self) -> str:
        return f"calibration-{self.pairs.digest}"

    def load_image(self, i: int):
        im = self.pairs.images[i]
        return (im() if callable(im) else im).convert("RGB")


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(size, n), replace=False))


def from_training_pool(world_root, size: int = 1000, seed: int = 0, source: str = "laion") -> CalibrationSet:
    """``size`` pairs of the synthetic world's training pool (one of its training mixes), seeded."""
    from PIL import Image

    from ..models.tiny import load_training_pool

    images, index, captions = load_training_pool(world_root, source)
    rows = _sample(len(captions), size, seed)
    pics = [Image.fromarray(images[int(index[r])].numpy()) for r in rows]
    return CalibrationSet(f"synthetic-train/{source}", seed, pics, [captions[r] for r in rows],
                          [f"train:{int(index[r])}" for r in rows])


def from_retrieval_set(dataset, size: int = 1000, seed: int = 0) -> CalibrationSet:
    """``size`` pairs of a COCO-format captions set (first caption of each sampled image), seeded."""
    caps = dataset.captions.drop_duplicates("image_index", keep="first")
    rows = _sample(len(caps), size, seed)
    picked = caps.iloc[rows]
    images = [(lambda i=int(i): dataset.load_image(i)) for i in picked["image_index"]]
    ids = [str(dataset.table.at[int(i), "path"]) for i in picked["image_index"]]
    return CalibrationSet(f"{dataset.name}", seed, images, picked["caption"].tolist(), ids)


def accepts_calibration(quantize: Callable) -> bool:
    """Whether a ``quantize`` callable takes ``calibration`` (the protocol since qclip 0.2)."""
    try:
        params = inspect.signature(quantize).parameters
    except (TypeError, ValueError):
        return False
    return "calibration" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def call_quantize(quantizer, model, calibration: CalibrationSet | None = None):
    """``quantizer.quantize(model, calibration=...)``, or ``quantize(model)`` for a quantizer written
    against the old protocol."""
    if accepts_calibration(quantizer.quantize):
        return quantizer.quantize(model, calibration=calibration)
    return quantizer.quantize(model)
