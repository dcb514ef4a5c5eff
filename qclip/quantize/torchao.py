"""torchao quantizers: ``ao-int8wo``, ``ao-int8dyn``, ``ao-int4wo``, ``ao-float8wo`` and ``ao-float8dyn``,
through ``torchao.quantization.quantize_``.

torchao keeps each ``nn.Linear`` and swaps its weight for a tensor subclass (``Int8Tensor``,
``Int4TilePackedTo4dTensor``...), so coverage is read from the weight's type.

* ``ao-int8wo``: ``Int8WeightOnlyConfig`` (int8 weights, per-row scales; activations stay float);
* ``ao-int8dyn``: ``Int8DynamicActivationInt8WeightConfig`` (int8 weights per row, activations
  quantized per token at run time);
* ``ao-int4wo``: ``Int4WeightOnlyConfig`` with the ``tile_packed_to_4d`` (tinygemm) packing, groupwise
  int4 with ``group_size`` weights per scale/zero point. It needs bfloat16 activations, so the model is
  cast to bfloat16 first, and CUDA: in torchao 0.18 no int4 weight-only packing runs on CPU ("plain"
  needs the mslk kernels, "plain_int32" refuses CPU, "tile_packed_to_4d" is CUDA-only). Layers whose
  ``in_features`` is not a multiple of ``group_size`` stay unquantized and are reported.
* ``ao-float8wo``: ``Float8WeightOnlyConfig`` (float8 e4m3 weights, one scale per row, in a
  ``Float8Tensor``); the linear dequantizes the weight and multiplies in the activations' dtype, so it
  runs on the CPU and on any GPU (torchao 0.18).
* ``ao-float8dyn``: ``Float8DynamicActivationFloat8WeightConfig`` (float8 e4m3 weights and activations,
  one scale per tensor, activations scaled at run time), whose float8 matmul (``torch._scaled_mm``)
  needs a CUDA GPU of compute capability 8.9 or higher (Ada, Hopper, Blackwell): unavailable elsewhere,
  with the capability found in the reason.

``set_inductor_config`` is off by default: torchao would otherwise change global torch._inductor
settings as a side effect of quantizing.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from torch import nn

from .base import BaseQuantizer, QuantizerSpec, _fixed, register_quantizer

__all__ = ["TorchAOSpec", "TorchAOInt4Spec", "AOInt8WeightOnly", "AOInt8Dynamic", "AOInt4WeightOnly",
           "AOFloat8WeightOnly", "AOFloat8Dynamic", "FLOAT8_MIN_CAPABILITY"]

_MIN_TORCHAO = "0.10"
#: the CUDA compute capability torchao's float8 matmul needs (sm_89: Ada; Hopper is 9.0)
FLOAT8_MIN_CAPABILITY = (8, 9)
#: the float8 configs as used here (``Float8Tensor``, ``version=2``), tested with torchao 0.18
_MIN_FLOAT8 = "0.18"


@dataclass(frozen=True)
class TorchAOSpec(QuantizerSpec):
    """``config``: the torchao config class name (fixed); ``set_inductor_config``: let torchao tune inductor."""

    config: str = _fixed("")
    set_inductor_config: bool = False


@dataclass(frozen=True)
class TorchAOInt4Spec(TorchAOSpec):
    """``group_size``: weights per scale/zero point; ``packing``: torchao's ``int4_packing_format``."""

    group_size: int = 128
    packing: str = "tile_packed_to_4d"

    def __post_init__(self):
        if self.group_size not in (32, 64, 128, 256):
            raise ValueError(f"Expected group_size in (32, 64, 128, 256), but got {self.group_size!r}")


class _TorchAO(BaseQuantizer):
    family = "torchao"
    arithmetic = "real"  # torchao tensor subclasses: low-precision storage, torchao's kernels
    quantizes = "weights"

    def _config(self):
        import torchao.quantization as tq

        return getattr(tq, self.config.config)(set_inductor_config=self.config.set_inductor_config)

    def _filter(self, module: nn.Module, fqn: str) -> bool:
        # plain float Linear layers only (not bitsandbytes modules, not already-quantized weights)
        return isinstance(module, nn.Linear) and type(getattr(module, "weight", None)) is nn.Parameter

    def _prepare_dtype(self, model) -> None:
        """Hook for configs that need a particular activation dtype."""

    def _apply(self, model) -> None:
        from torchao.quantization import quantize_

        self._prepare_dtype(model)
        quantize_(model.module, self._config(), filter_fn=self._filter)


@register_quantizer
class AOInt8WeightOnly(_TorchAO):
    """torchao int8 weight-only (per-row scales, float activations)."""

    name = "ao-int8wo"
    spec = TorchAOSpec(library="torchao", bits=8, min_version=_MIN_TORCHAO, config="Int8WeightOnlyConfig",
                       scheme="int8 weight-only, per-row scales")


@register_quantizer
class AOInt8Dynamic(_TorchAO):
    """torchao int8 weights + dynamically quantized int8 activations."""

    name = "ao-int8dyn"
    quantizes = "weights+activations (dynamic)"
    spec = TorchAOSpec(library="torchao", bits=8, min_version=_MIN_TORCHAO,
                       config="Int8DynamicActivationInt8WeightConfig",
                       scheme="int8 weights per row, int8 activations per token (dynamic)")


@register_quantizer
class AOInt4WeightOnly(_TorchAO):
    """torchao int4 weight-only (groupwise, tinygemm packing; CUDA, bfloat16 activations)."""

    name = "ao-int4wo"
    spec = TorchAOInt4Spec(library="torchao", bits=4, min_version=_MIN_TORCHAO, requires_cuda=True,
                           config="Int4WeightOnlyConfig",
                           scheme="int4 weight-only, groupwise asymmetric, bfloat16 activations")

    def _cuda_only_reason(self) -> str:
        return ("torchao's Int4WeightOnlyConfig has no CPU kernel for this packing "
                f"({self.config.packing!r} is CUDA-only); needs a CUDA device")

    def available(self, device=None) -> tuple[bool, str]:
        ok, reason = super().available(device)
        if ok and self.config.packing == "plain" and importlib.util.find_spec("mslk") is None:
            return False, f"{self.name}: packing 'plain' needs the mslk package (not installed)"
        return ok, reason

    def _config(self):
        from torchao.quantization import Int4WeightOnlyConfig

        return Int4WeightOnlyConfig(group_size=self.config.group_size, int4_packing_format=self.config.packing,
                                    set_inductor_config=self.config.set_inductor_config)

    def _filter(self, module: nn.Module, fqn: str) -> bool:
        return super()._filter(module, fqn) and module.in_features % self.config.group_size == 0

    def _prepare_dtype(self, model) -> None:
        model.module.to(torch.bfloat16)

    def is_target_storage(self, storage: str) -> bool:
        # every layer is bfloat16 after the cast; only the int4 tensor subclasses count as quantized
        return storage.startswith("Int4")


@register_quantizer
class AOFloat8WeightOnly(_TorchAO):
    """torchao float8 weight-only (e4m3, per-row scales; dequantized in the linear, any device)."""

    name = "ao-float8wo"
    spec = TorchAOSpec(library="torchao", bits=8, min_version=_MIN_FLOAT8, config="Float8WeightOnlyConfig",
                       scheme="float8 e4m3 weight-only, per-row scales, dequantized per call")


@register_quantizer
class AOFloat8Dynamic(_TorchAO):
    """torchao float8 weights + dynamically scaled float8 activations (CUDA, compute capability >= 8.9)."""

    name = "ao-float8dyn"
    quantizes = "weights+activations (dynamic)"
    batch_dependent = True  # one activation scale per call, from the whole batch
    spec = TorchAOSpec(library="torchao", bits=8, min_version=_MIN_FLOAT8, requires_cuda=True,
                       config="Float8DynamicActivationFloat8WeightConfig",
                       scheme="float8 e4m3 weights and activations, per-tensor scales (activations at run time), "
                              "float8 matmul")

    def _cuda_only_reason(self) -> str:
        need = ".".join(map(str, FLOAT8_MIN_CAPABILITY))
        return (f"torchao's Float8DynamicActivationFloat8WeightConfig runs float8 matmuls (torch._scaled_mm), "
                f"which need a CUDA GPU of compute capability >= {need}; needs a CUDA device")

    def available(self, device=None) -> tuple[bool, str]:
        ok, reason = super().available(device)
        if ok and torch.device(device or "cuda").type == "cuda":
            cap = torch.cuda.get_device_capability(device)
            if tuple(cap) < FLOAT8_MIN_CAPABILITY:
                need = ".".join(map(str, FLOAT8_MIN_CAPABILITY))
                return False, (f"{self.name}: float8 matmuls need a CUDA GPU of compute capability >= {need}; "
                               f"{torch.cuda.get_device_name(device)} has {cap[0]}.{cap[1]}")
        return ok, reason
