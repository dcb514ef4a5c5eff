"""HQQ (Half-Quadratic Quantization): ``hqq-4bit``, ``hqq-8bit``; ``hqq-{2,3,5,6}bit`` by name.

Data-free: every ``nn.Linear`` of both towers (attention q/k/v/out included, once
``prepare_for_quantization`` made them layers) becomes an ``hqq.core.quantize.HQQLinear``: asymmetric
integer weights in groups of ``group_size`` consecutive input weights, each group with a float scale and
zero point that HQQ's half-quadratic solver fits to minimise the weight error (``optimize=False``:
plain min/max rounding). The weights are bit-packed (``4bit_u8``: two per byte; ``3bit_32``; 5, 6 and 8
bits: one per byte) and dequantized to float32 on every call, then multiplied with ``torch.matmul``
(HQQ's PyTorch backend; its CUDA/ATen kernels are a separate build qclip does not use). Computing in
float32 keeps the inputs' dtype; on CUDA, HQQ's solver itself runs in float16, so its CPU and CUDA
weights differ slightly (the device is part of the cache key anyway).

``HQQLinear`` keeps no ``weight``: coverage reads it as ``hqq-int<bits>`` (:mod:`qclip.quantize.coverage`),
and open_clip's text tower, which reads its cast dtype from a weight, reads a LayerNorm's once prepared.
Layers whose ``in_features`` is not a multiple of ``group_size`` stay float32 and are reported.

Built under ``torch.no_grad``: HQQ quantizes the tensors it is given, and autograd would keep the fp32
graph alive. ``HQQLinear.to()`` is a no-op, so the model is quantized on the device it runs on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from ._swap import replace_named
from .base import BaseQuantizer, QuantizerSpec, _fixed, register_quantizer, register_quantizer_pattern

__all__ = ["HqqSpec", "HqqQuantizer", "NAME_RE", "BITS", "DEFAULT_NAMES", "hqq_quantizer"]

#: the widths this family accepts (HQQ also has 1 and 1.58 bits, which CLIP does not survive)
BITS = (2, 3, 4, 5, 6, 8)
NAME_RE = re.compile(r"^hqq-(?P<bits>[234568])bit$")
#: registered (listed, run by ``pytest bench``); the other widths resolve by name
DEFAULT_NAMES = ("hqq-4bit", "hqq-8bit")


@dataclass(frozen=True)
class HqqSpec(QuantizerSpec):
    """``group_size``: input weights per scale and zero point (a multiple of 8); ``optimize``: HQQ's
    half-quadratic solver (False: min/max rounding)."""

    nbits: int = _fixed(4)
    group_size: int = 64
    optimize: bool = True

    def __post_init__(self):
        if self.nbits not in BITS:
            raise ValueError(f"Expected nbits in {BITS}, but got {self.nbits!r}")
        if not isinstance(self.group_size, int) or isinstance(self.group_size, bool) or self.group_size <= 0 \
                or self.group_size % 8:
            raise ValueError(f"Expected group_size a positive multiple of 8, but got {self.group_size!r}")
        if not isinstance(self.optimize, bool):
            raise ValueError(f"Expected optimize True or False, but got {self.optimize!r}")


class HqqQuantizer(BaseQuantizer):
    """HQQ weight-only quantization of every Linear; one instance per name (``hqq-<bits>bit``)."""

    family = "hqq"
    arithmetic = "real"  # bit-packed integer storage, dequantized per call by HQQ's PyTorch backend
    quantizes = "weights"
    install = "pip install 'qclip[hqq]', or pip install hqq"

    def __init__(self, name: str, **options):
        m = NAME_RE.match(name)
        if not m:
            raise ValueError(f"Expected a name hqq-<bits>bit with bits in {BITS}, but got {name!r}")
        self.name = name
        bits = int(m["bits"])
        self.spec = HqqSpec(library="hqq", bits=bits, min_version="0.2", nbits=bits,
                            scheme=f"HQQ int{bits} weight-only, groupwise asymmetric (half-quadratic fit), "
                                   "dequantized to float32 per call")
        self.config = self.spec.with_options(**options)

    def _apply(self, model) -> dict:
        from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

        cfg = self.config
        quant_config = BaseQuantizeConfig(nbits=cfg.nbits, group_size=cfg.group_size, axis=1)
        quant_config["weight_quant_params"]["optimize"] = cfg.optimize
        device = str(model.device)
        names = [name for layers in model.linear_layers().values() for name, layer in layers
                 if isinstance(layer, nn.Linear) and layer.in_features % cfg.group_size == 0]

        def make(lin: nn.Linear) -> nn.Module:
            # del_orig: HQQLinear drops the float layer (this is the caller's copy), so no nn.Linear hides inside
            return HQQLinear(lin, quant_config, del_orig=True, compute_dtype=torch.float32, device=device)

        with torch.no_grad():
            replace_named(model.module, names, make)
        return {"kernels": {f"hqq-{HQQLinear.backend.value}": len(names)}}


def hqq_quantizer(name: str, **options) -> HqqQuantizer:
    """The quantizer for any ``hqq-<bits>bit`` name."""
    return HqqQuantizer(name, **options)


for _name in DEFAULT_NAMES:
    register_quantizer(name=_name)(lambda _n=_name, **opts: HqqQuantizer(_n, **opts))
register_quantizer_pattern(NAME_RE, hqq_quantizer)
