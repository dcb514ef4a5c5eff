"""torchao quantizers: ``ao-int8wo``, ``ao-int8dyn`` and ``ao-int4wo``, through ``torchao.quantization.quantize_``.

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

``set_inductor_config`` is off by default: torchao would otherwise change global torch._inductor
settings as a side effect of quantizing.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from torch import nn

from .base import BaseQuantizer, QuantizerSpec, _fixed, register_quantizer

__all__ = ["TorchAOSpec", "TorchAOInt4Spec", "AOInt8WeightOnly", "AOInt8Dynamic", "AOInt4WeightOnly"]

_MIN_TORCHAO = "0.10"


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
