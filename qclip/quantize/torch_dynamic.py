"""``torch-dyn-int8``: PyTorch's eager dynamic quantization of every ``nn.Linear``.

``torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)``: int8 weights (one
scale per tensor by default, per output channel with ``per_channel=True``), activations quantized per
batch at run time. The third method of the "You Never Know" study. PyTorch marks
``torch.ao.quantization`` deprecated in favour of torchao, and its deprecation warnings are silenced here.

Two implementations of the same arithmetic, chosen by the model's device:

* CPU: ``quantize_dynamic`` itself, whose layers call fbgemm's kernels (the reference);
* CUDA, which has no torch.ao kernels: ``quantize_dynamic`` runs on the CPU (the int8 weights are torch's
  own), then each quantized layer becomes a :class:`~qclip.quantize.int8_dynamic_cuda.DynamicInt8Linear`
  on the GPU: fbgemm's per-call activation scale and zero point, 7-bit activations (``reduce_range``),
  ``torch._int_mm`` int32 accumulation with the zero-point corrections and fbgemm's dequantization. The
  integers are fbgemm's bit for bit and the outputs equal to float rounding (tested on the CPU through
  the same code with the int64 matmul, :mod:`qclip.quantize.int8_dynamic_cuda`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .base import BaseQuantizer, QuantizerSpec, _device_type, register_quantizer

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
    batch_dependent = True  # one activation scale and zero point per call, from the whole batch
    family = "torch"
    arithmetic = "real"  # fbgemm's int8 kernels (CUDA: the same integers through torch._int_mm)
    quantizes = "weights+activations (dynamic)"
    spec = TorchDynamicSpec(library="torch", bits=8, supports_cuda=True,
                            scheme="dynamic int8: int8 weights, activations quantized per batch")
    #: ``"auto"``: torch.ao's fbgemm kernels on the CPU, qclip's re-implementation on CUDA;
    #: ``"reimplementation"``: the CUDA implementation on any device (how the tests run it on the CPU).
    #: Not part of the config: both compute the same integers.
    implementation: str = "auto"

    def uses_reimplementation(self, device=None) -> bool:
        """Whether quantizing on ``device`` builds :class:`DynamicInt8Linear` layers (else torch.ao's)."""
        if self.implementation not in ("auto", "reimplementation"):
            raise ValueError(f"Expected implementation 'auto' or 'reimplementation', but got {self.implementation!r}")
        return self.implementation == "reimplementation" or _device_type(device) != "cpu"

    def available(self, device=None) -> tuple[bool, str]:
        ok, reason = super().available(device)
        if ok and not hasattr(torch.ao.quantization, "quantize_dynamic"):
            return False, f"{self.name}: this torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic"
        return ok, reason

    def describe(self, model=None) -> dict:
        out = super().describe(model)
        out["kernels"] = {"cpu": "torch.ao quantize_dynamic (fbgemm/x86 linear_dynamic)",
                          "cuda": "qclip DynamicInt8Linear: fbgemm's arithmetic with torch._int_mm (int32 "
                                  "accumulation); integers bit for bit, outputs to float rounding"}
        return out

    def resolved_config(self, device=None) -> dict:
        out = self.config.to_dict()
        if self.uses_reimplementation(device):
            out["kernel"] = "qclip-int8-matmul"
        return out

    def _apply(self, model) -> dict | None:
        from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

        qconfig = per_channel_dynamic_qconfig if self.config.per_channel else default_dynamic_qconfig
        if self.uses_reimplementation(model.device):
            from .int8_dynamic_cuda import quantize_dynamic_int8

            device = model.device
            names = quantize_dynamic_int8(model.module, qconfig, device)
            return {"kernels": {f"{device.type}-int8-matmul": len(names)}}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
            warnings.filterwarnings("ignore", message=r".*quantize_per_(tensor|channel).*deprecated")
            torch.ao.quantization.quantize_dynamic(model.module, {nn.Linear: qconfig}, dtype=torch.qint8,
                                                   inplace=True)
