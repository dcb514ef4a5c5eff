"""bitsandbytes quantizers: ``bnb-int8`` (LLM.int8), ``bnb-nf4`` and ``bnb-fp4`` (QLoRA 4-bit).

Every ``nn.Linear`` of both towers is replaced by ``bnb.nn.Linear8bitLt`` (``has_fp16_weights=False``:
int8 weights with one absmax scale per output row, inputs quantized per row at run time, input columns
with an outlier above ``threshold`` computed in 16-bit) or ``bnb.nn.Linear4bit`` (blockwise 4-bit with
``blocksize`` weights per absmax, optionally double-quantized absmax: ``double_quant`` =
``compress_statistics``). The weights are quantized by moving the new layer to the model's device, as
bitsandbytes and its Hugging Face integration do. bitsandbytes >= 0.47 runs both on x86 CPUs and on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._swap import replace_linears
from .base import BaseQuantizer, QuantizerSpec, _fixed, register_quantizer

__all__ = ["BnbInt8Spec", "Bnb4bitSpec", "BnbInt8", "BnbNF4", "BnbFP4"]

_MIN_BNB = "0.47"
_COMPUTE_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class BnbInt8Spec(QuantizerSpec):
    """LLM.int8: ``threshold`` is the outlier threshold on activations (0 disables the fp16 path)."""

    threshold: float = 6.0

    def __post_init__(self):
        if not isinstance(self.threshold, int | float) or self.threshold < 0:
            raise ValueError(f"Expected threshold >= 0, but got {self.threshold!r}")


@dataclass(frozen=True)
class Bnb4bitSpec(QuantizerSpec):
    """4-bit blockwise: ``compute_dtype`` "auto" = float32 on CPU, bfloat16 on CUDA."""

    quant_type: str = _fixed("nf4")
    blocksize: int = 64
    compute_dtype: str = "auto"
    double_quant: bool = False
    quant_storage: str = "uint8"

    def __post_init__(self):
        if self.blocksize not in (32, 64, 128, 256, 512, 1024, 2048, 4096):
            raise ValueError(f"Expected blocksize a power of two in [32, 4096], but got {self.blocksize!r}")
        if self.compute_dtype not in _COMPUTE_DTYPES:
            raise ValueError(f"Expected compute_dtype in {_COMPUTE_DTYPES}, but got {self.compute_dtype!r}")
        if self.quant_storage not in ("uint8", "float16", "bfloat16", "float32"):
            raise ValueError(f"Expected quant_storage uint8/float16/bfloat16/float32, but got {self.quant_storage!r}")


def _resolve_compute_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


class _Bnb(BaseQuantizer):
    family = "bitsandbytes"


@register_quantizer
class BnbInt8(_Bnb):
    """bitsandbytes LLM.int8 (``Linear8bitLt``, vector-wise int8 with outlier decomposition)."""

    name = "bnb-int8"
    spec = BnbInt8Spec(library="bitsandbytes", bits=8, min_version=_MIN_BNB,
                       scheme="LLM.int8: int8 weights, per-row absmax, fp16 outlier columns")

    def _apply(self, model) -> None:
        import bitsandbytes as bnb

        device = model.device
        threshold = float(self.config.threshold)

        def make(lin: nn.Linear) -> nn.Module:
            new = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                      has_fp16_weights=False, threshold=threshold, device="meta")
            # Int8Params quantizes when moved off the CPU-resident float data (see Int8Params.to)
            new.weight = bnb.nn.Int8Params(lin.weight.detach().to("cpu", torch.float32), requires_grad=False,
                                           has_fp16_weights=False)
            if lin.bias is not None:
                new.bias = nn.Parameter(lin.bias.detach().clone(), requires_grad=False)
            return new.to(device)

        replace_linears(model.module, make)


class _Bnb4bit(_Bnb):
    def resolved_config(self, device=None) -> dict:
        out = self.config.to_dict()
        out["compute_dtype"] = str(_resolve_compute_dtype(self.config.compute_dtype,
                                                          torch.device(device or "cpu"))).removeprefix("torch.")
        return out

    def _apply(self, model) -> None:
        import bitsandbytes as bnb

        cfg = self.config
        device = model.device
        compute = _resolve_compute_dtype(cfg.compute_dtype, device)
        storage = getattr(torch, cfg.quant_storage)

        def make(lin: nn.Linear) -> nn.Module:
            new = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                    compute_dtype=compute, compress_statistics=cfg.double_quant,
                                    quant_type=cfg.quant_type, quant_storage=storage, device="meta")
            new.weight = bnb.nn.Params4bit(lin.weight.detach().float(), requires_grad=False,
                                           blocksize=cfg.blocksize, compress_statistics=cfg.double_quant,
                                           quant_type=cfg.quant_type, quant_storage=storage, module=new)
            if lin.bias is not None:
                new.bias = nn.Parameter(lin.bias.detach().to(compute), requires_grad=False)
            return new.to(device)  # Params4bit quantizes here

        replace_linears(model.module, make)


@register_quantizer
class BnbNF4(_Bnb4bit):
    """bitsandbytes 4-bit NormalFloat (``Linear4bit``, quant_type="nf4")."""

    name = "bnb-nf4"
    spec = Bnb4bitSpec(library="bitsandbytes", bits=4, min_version=_MIN_BNB, quant_type="nf4",
                       scheme="NF4 blockwise, absmax per block")


@register_quantizer
class BnbFP4(_Bnb4bit):
    """bitsandbytes 4-bit float (``Linear4bit``, quant_type="fp4")."""

    name = "bnb-fp4"
    spec = Bnb4bitSpec(library="bitsandbytes", bits=4, min_version=_MIN_BNB, quant_type="fp4",
                       scheme="FP4 (e2m1) blockwise, absmax per block")
