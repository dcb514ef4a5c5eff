"""optimum-quanto: ``quanto-w8``, ``quanto-w4``, ``quanto-w8a8``; ``quanto-w4a8`` and ``-fp8`` by name.

Every ``nn.Linear`` of both towers (attention q/k/v/out included, once ``prepare_for_quantization`` made
them layers) becomes a quanto ``QLinear`` and is frozen: its weight becomes quanto's packed tensor,
int8 with one absmax scale per output row (``WeightQBytesTensor``), or int4 packed two per byte with a
scale and shift per group (``WeightQBitsTensor``; quanto picks the group: 128, else the largest
multiple of 32 dividing ``in_features``, else one group per row for layers of at most 128 inputs).
Coverage reads them as ``quanto-int8`` / ``quanto-int4``.

Names: ``quanto-w{8,4}`` (weights only), ``quanto-w{8,4}a8`` (int8 activations), ``quanto-w{8,4}a8-fp8``
(float8 e4m3 activations). With activations, every layer's input is quantized with a static per-tensor
scale that quanto's ``Calibration`` context fits (absmax, momentum 0.9) on the calibration pairs
(``quantize(model, calibration=...)``, both towers). Output re-quantization is switched off, so each
layer's input is quantized once, by its own calibrated scale, and no quanto tensor leaves a layer for
the towers' other ops (attention softmax, LayerNorm, the returned embedding). Kernels on the CPU: int8
x int8 runs ``torch._int_mm`` (int32 accumulation); int8 weights with float or float8 activations, and
int4 weights, dequantize and multiply in float32.

Two library traps this module avoids: a frozen int4 layer fails under ``torch.inference_mode`` ("Cannot
set version_counter for inference tensor"), which qclip's encoder uses, so :class:`QuantoLinear` runs
the layer with inference mode off and autograd off (``no_grad``); and frozen quanto tensors cannot be
deep-copied, so a quantized model is not copied (qclip copies the fp32 model before quantizing).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from ._swap import replace_named
from .base import BaseQuantizer, QuantizerSpec, _fixed, register_quantizer, register_quantizer_pattern

__all__ = ["QuantoSpec", "QuantoQuantizer", "NAME_RE", "DEFAULT_NAMES", "quanto_linear_class",
           "quanto_quantizer"]

NAME_RE = re.compile(r"^quanto-w(?P<w>[48])(?:a8(?P<fp8>-fp8)?)?$")
#: registered (listed, run by ``pytest bench``); the other combinations resolve by name
DEFAULT_NAMES = ("quanto-w8", "quanto-w4", "quanto-w8a8")
_WEIGHTS = ("int8", "int4")
_ACTIVATIONS = ("none", "int8", "fp8")


@dataclass(frozen=True)
class QuantoSpec(QuantizerSpec):
    """``weights`` and ``activations`` come from the name; ``calibration_batch_size``: pairs per
    calibration forward pass (activations only)."""

    weights: str = _fixed("int8")
    activations: str = _fixed("none")
    calibration_batch_size: int = 64

    def __post_init__(self):
        if self.weights not in _WEIGHTS or self.activations not in _ACTIVATIONS:
            raise ValueError(f"Expected weights in {_WEIGHTS} and activations in {_ACTIVATIONS}, but got "
                             f"{self.weights!r}, {self.activations!r}")
        if not isinstance(self.calibration_batch_size, int) or self.calibration_batch_size <= 0:
            raise ValueError(f"Expected calibration_batch_size > 0, but got {self.calibration_batch_size!r}")


_QLINEAR: type | None = None


def quanto_linear_class() -> type:
    """quanto's ``QLinear``, callable under ``torch.inference_mode`` (see the module doc)."""
    global _QLINEAR
    if _QLINEAR is None:
        from optimum.quanto.nn import QLinear

        class QuantoLinear(QLinear):
            """optimum-quanto ``QLinear`` whose forward runs outside inference mode (under ``no_grad``)."""

            def forward(self, input: torch.Tensor) -> torch.Tensor:
                if torch.is_inference_mode_enabled():
                    with torch.inference_mode(False), torch.no_grad():
                        return super().forward(input)
                return super().forward(input)

        _QLINEAR = QuantoLinear
    return _QLINEAR


class QuantoQuantizer(BaseQuantizer):
    """optimum-quanto int8/int4 weights, optionally int8/float8 static activations; one instance per name."""

    family = "quanto"
    arithmetic = "real"  # quanto's packed int8/int4 weights; int8 x int8 through torch._int_mm
    install = "pip install 'qclip[quanto]', or pip install optimum-quanto"

    def __init__(self, name: str, **options):
        m = NAME_RE.match(name)
        if not m:
            raise ValueError("Expected a name like quanto-w8, quanto-w4, quanto-w8a8 or quanto-w4a8-fp8, but got "
                             f"{name!r}")
        self.name = name
        w = int(m["w"])
        acts = "none" if "a8" not in name else ("fp8" if m["fp8"] else "int8")
        weights = f"int{w}"
        grid = "int8 weights (absmax scale per output row)" if w == 8 else "int4 weights (scale and shift per group)"
        act_text = {"none": "float activations",
                    "int8": "int8 activations, static per-tensor scales (quanto Calibration)",
                    "fp8": "float8 e4m3 activations, static per-tensor scales (quanto Calibration)"}[acts]
        self.spec = QuantoSpec(library="optimum.quanto", bits=w, min_version="0.2", weights=weights,
                               activations=acts, scheme=f"quanto {grid}; {act_text}")
        self.config = self.spec.with_options(**options)
        self.needs_calibration = acts != "none"

    @property
    def quantizes(self) -> str:
        return "weights" if self.config.activations == "none" else "weights+activations (static)"

    def is_target_storage(self, storage: str) -> bool:
        return storage.startswith("quanto-")

    def _apply(self, model, calibration=None) -> dict:
        from optimum.quanto import Calibration, freeze, qfloat8, qint4, qint8

        cfg = self.config
        wq = {"int8": qint8, "int4": qint4}[cfg.weights]
        aq = {"none": None, "int8": qint8, "fp8": qfloat8}[cfg.activations]
        layer_cls = quanto_linear_class()

        new_layers: list[nn.Module] = []

        def make(lin: nn.Linear) -> nn.Module:
            new = layer_cls.from_module(lin, weights=wq, activations=aq)
            new.disable_output_quantization()  # inputs only (see the module doc); a no-op without activations
            new_layers.append(new)
            return new

        names = [name for layers in model.linear_layers().values() for name, _ in layers]
        with torch.no_grad():
            replace_named(model.module, names, make)
            extra: dict = {}
            if aq is not None:
                model.module.eval()
                with Calibration(streamline=False):
                    for pixels, tokens in calibration.batches(model, cfg.calibration_batch_size):
                        model.encode_image(pixels)
                        model.encode_text(tokens)
                extra["calibration"] = calibration.describe()
            freeze(model.module)
        groups = Counter(str(layer.weight_group_size or "per-row") for layer in new_layers)
        return {**extra, "weight_groups": dict(groups)}


def quanto_quantizer(name: str, **options) -> QuantoQuantizer:
    """The quantizer for any ``quanto-w{8,4}[a8[-fp8]]`` name."""
    return QuantoQuantizer(name, **options)


for _name in DEFAULT_NAMES:
    register_quantizer(name=_name)(lambda _n=_name, **opts: QuantoQuantizer(_n, **opts))
register_quantizer_pattern(NAME_RE, quanto_quantizer)
