"""Precision baselines: ``fp32`` (the reference, a no-op), ``fp16`` and ``bf16`` (cast the module).

After a cast, ``ClipModel.compute_dtype`` is the new dtype: callers cast pixels to it before
``encode_image`` (open_clip's image tower does not cast its input); the wrappers return float32
features. open_clip's text tower reads its cast dtype from the first LayerNorm once prepared
(:func:`qclip.models.attention.prepare_open_clip`), so it follows the cast too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import BaseQuantizer, QuantizerSpec, _fixed, register_quantizer

__all__ = ["PrecisionSpec", "Fp32", "Fp16", "Bf16"]


@dataclass(frozen=True)
class PrecisionSpec(QuantizerSpec):
    """Cast every floating parameter and buffer to ``dtype`` (fixed per quantizer)."""

    dtype: str = _fixed("float32")


class _Cast(BaseQuantizer):
    family = "precision"
    arithmetic = "real"  # half-precision storage and kernels

    def _apply(self, model) -> None:
        dtype = getattr(torch, self.config.dtype)
        if dtype != torch.float32:
            model.module.to(dtype)


@register_quantizer
class Fp32(_Cast):
    """The float32 reference: changes nothing, still reports coverage (0 of N) and weight bytes."""

    name = "fp32"
    arithmetic = "reference"
    quantizes = "none"
    spec = PrecisionSpec(library="torch", bits=32, scheme="float32 (reference)", dtype="float32")


@register_quantizer
class Fp16(_Cast):
    """Half precision (IEEE float16) for every weight and activation."""

    name = "fp16"
    quantizes = "weights+activations (float16)"
    spec = PrecisionSpec(library="torch", bits=16, scheme="float16 cast", dtype="float16")


@register_quantizer
class Bf16(_Cast):
    """bfloat16 for every weight and activation."""

    name = "bf16"
    quantizes = "weights+activations (bfloat16)"
    spec = PrecisionSpec(library="torch", bits=16, scheme="bfloat16 cast", dtype="bfloat16")
