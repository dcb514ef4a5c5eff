"""``torch-dyn-int8``: PyTorch's eager dynamic quantization of every ``nn.Linear``.

``torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)``: int8 weights (one
scale per tensor by default, per output channel with ``per_channel=True``), activations quantized per
batch at run time. The third method of the "You Never Know" study. CPU only (fbgemm/x86/qnnpack
kernels); PyTorch marks ``torch.ao.quantization`` deprecated in favour of torchao, and its deprecation
warnings are silenced here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .base import BaseQuantizer, QuantizerSpec, register_quantizer

__all__ = ["TorchDynamicSpec", "TorchDynamicInt8"]


@dataclass(frozen=True)
class TorchDynamicSpec(QuantizerSpec):
    """``per_channel``: per-output-channel weight scales instead of one per tensor. The weights are
    packed for ``torch.backends.quantized.engine`` as set when quantizing (x86/fbgemm by default)."""

    per_channel: bool = False


@register_quantizer
class TorchDynamicInt8(BaseQuantizer):
    """``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear`` (qint8)."""

    name = "torch-dyn-int8"
    family = "torch"
    spec = TorchDynamicSpec(library="torch", bits=8, supports_cuda=False,
                            scheme="dynamic int8: int8 weights, activations quantized per batch")

    def available(self, device=None) -> tuple[bool, str]:
        ok, reason = super().available(device)
        if ok and not hasattr(torch.ao.quantization, "quantize_dynamic"):
            return False, f"{self.name}: this torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic"
        return ok, reason

    def _apply(self, model) -> None:
        from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

        qconfig = per_channel_dynamic_qconfig if self.config.per_channel else default_dynamic_qconfig
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
            warnings.filterwarnings("ignore", message=r".*quantize_per_(tensor|channel).*deprecated")
            torch.ao.quantization.quantize_dynamic(model.module, {nn.Linear: qconfig}, dtype=torch.qint8,
                                                   inplace=True)
