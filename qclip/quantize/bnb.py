"""bitsandbytes quantizers: ``bnb-int8`` (LLM.int8), ``bnb-nf4`` and ``bnb-fp4`` (QLoRA 4-bit).

Every ``nn.Linear`` of both towers is replaced by ``bnb.nn.Linear8bitLt`` (``has_fp16_weights=False``:
int8 weights with one absmax scale per output row, inputs quantized per row at run time, input columns
with an outlier above ``threshold`` computed in 16-bit) or ``bnb.nn.Linear4bit`` (blockwise 4-bit with
``blocksize`` weights per absmax, optionally double-quantized absmax: ``double_quant`` =
``compress_statistics``). The weights are quantized by moving the new layer to the model's device, as
bitsandbytes and its Hugging Face integration do. bitsandbytes >= 0.47 runs both on x86 CPUs and on CUDA.

**bitsandbytes' two CPU paths for 4-bit.** On a CPU with AVX512-BF16, ``Linear4bit.forward`` repacks
its weight on the first inference call for a fused kernel that computes in bfloat16 (the *packed* path);
elsewhere it dequantizes the weight and calls ``F.linear`` in the compute dtype (the *generic* path). The
packed kernel needs ``out_features`` divisible by 32 and ``in_features`` divisible by the blocksize, and
fails inside bitsandbytes on other shapes (a 96-wide layer at blocksize 64). qclip therefore decides per
layer, at quantization time (:func:`packed_kernel_fits`): the option ``cpu_kernel`` is ``"auto"``
(bitsandbytes' own choice: packed where the CPU has AVX512-BF16 and the shape fits), ``"generic"`` (every
layer on the generic path, on any CPU) or ``"packed"`` (packed wherever the shape fits; needs the CPU
feature). A layer the packed kernel cannot take runs the generic 4-bit path: it stays quantized, and the
quantization report counts the layers per kernel (``kernels``). The repack is done eagerly, so the bytes
stored (and counted) do not change on the first forward pass.

**The generic path dequantizes the flat weight.** bitsandbytes' native CPU ``dequantize_4bit`` (0.50) takes
a 2-D weight as rows of whole blocks; for a layer whose ``in_features`` is not a multiple of the blocksize
(blocks then straddle rows, as ``quantize_4bit`` lays them out over the flat tensor) it returns a wrong
weight on AVX512 CPUs, about twice the quantization error. qclip's generic layers
(:func:`generic_linear4bit_class`) therefore dequantize the weight as one flat vector, with the same
public ``dequantize_4bit``, and call ``F.linear`` in the compute dtype: what bitsandbytes' generic path
computes, correct for every shape (``tests/quantize/test_bnb_cpu_paths.py`` checks it against a plain
reimplementation of the blockwise dequantization).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ._swap import replace_linears
from .base import BaseQuantizer, QuantizerSpec, _fixed, register_quantizer

__all__ = ["BnbInt8Spec", "Bnb4bitSpec", "BnbInt8", "BnbNF4", "BnbFP4", "KernelPathWarning",
           "PACKED_BLOCK_N", "cpu_has_packed_kernel", "dequantize_flat", "generic_linear4bit_class",
           "packed_kernel_fits", "resolve_cpu_kernel"]

_MIN_BNB = "0.47"
_COMPUTE_DTYPES = ("auto", "float32", "bfloat16", "float16")
_CPU_KERNELS = ("auto", "generic", "packed")
#: the packed CPU kernel's tile along out_features (bitsandbytes' ``block_n``)
PACKED_BLOCK_N = 32


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
    cpu_kernel: str = "auto"

    def __post_init__(self):
        if self.blocksize not in (32, 64, 128, 256, 512, 1024, 2048, 4096):
            raise ValueError(f"Expected blocksize a power of two in [32, 4096], but got {self.blocksize!r}")
        if self.compute_dtype not in _COMPUTE_DTYPES:
            raise ValueError(f"Expected compute_dtype in {_COMPUTE_DTYPES}, but got {self.compute_dtype!r}")
        if self.quant_storage not in ("uint8", "float16", "bfloat16", "float32"):
            raise ValueError(f"Expected quant_storage uint8/float16/bfloat16/float32, but got {self.quant_storage!r}")
        if self.cpu_kernel not in _CPU_KERNELS:
            raise ValueError(f"Expected cpu_kernel in {_CPU_KERNELS}, but got {self.cpu_kernel!r}")


def _resolve_compute_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def cpu_has_packed_kernel() -> bool:
    """Whether bitsandbytes' packed 4-bit CPU kernel can run here (the CPU has AVX512-BF16)."""
    from bitsandbytes.functional import has_avx512bf16

    return bool(has_avx512bf16())


def packed_kernel_fits(out_features: int, in_features: int, blocksize: int) -> bool:
    """Whether bitsandbytes' packed 4-bit CPU kernel takes a ``[out_features, in_features]`` weight:
    whole tiles of :data:`PACKED_BLOCK_N` output rows, and whole quantization blocks per input row (its
    absmax is laid out as ``[out_features, in_features // blocksize]``)."""
    return out_features % PACKED_BLOCK_N == 0 and in_features % blocksize == 0 and in_features % 2 == 0


def resolve_cpu_kernel(choice: str) -> str:
    """``"packed"`` or ``"generic"``: the CPU path a 4-bit quantizer's ``cpu_kernel`` option means here."""
    if choice == "auto":
        return "packed" if cpu_has_packed_kernel() else "generic"
    return choice


class _Bnb(BaseQuantizer):
    family = "bitsandbytes"
    arithmetic = "real"  # int8 / packed 4-bit storage, bitsandbytes' kernels
    quantizes = "weights"


@register_quantizer
class BnbInt8(_Bnb):
    """bitsandbytes LLM.int8 (``Linear8bitLt``, vector-wise int8 with outlier decomposition)."""

    batch_dependent = True  # the fp16 outlier columns are those with an outlier anywhere in the batch
    name = "bnb-int8"
    quantizes = "weights+activations (dynamic, fp16 outlier columns)"  # int8 matmul of int8 rows
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
    def available(self, device=None) -> tuple[bool, str]:
        ok, reason = super().available(device)
        if ok and self.config.cpu_kernel == "packed" and torch.device(device or "cpu").type == "cpu" \
                and not cpu_has_packed_kernel():
            return False, (f"{self.name}: cpu_kernel='packed' needs a CPU with AVX512-BF16 (bitsandbytes' "
                           "packed 4-bit kernel); this CPU has none")
        return ok, reason

    def resolved_config(self, device=None) -> dict:
        device = torch.device(device or "cpu")
        out = self.config.to_dict()
        out["compute_dtype"] = str(_resolve_compute_dtype(self.config.compute_dtype, device)).removeprefix("torch.")
        if device.type == "cpu":
            out["cpu_kernel"] = resolve_cpu_kernel(self.config.cpu_kernel)
        return out

    def config_json(self) -> str:
        """With ``cpu_kernel="auto"`` the CPU decides the arithmetic (the packed kernel computes in
        bfloat16), so which path this CPU takes is part of the cache identity."""
        base = json.loads(super().config_json())
        if self.config.cpu_kernel == "auto":
            base["cpu_kernel_here"] = resolve_cpu_kernel("auto")
        return json.dumps(base, sort_keys=True, separators=(",", ":"), default=str)

    def _apply(self, model) -> None:
        import bitsandbytes as bnb

        cfg = self.config
        device = model.device
        compute = _resolve_compute_dtype(cfg.compute_dtype, device)
        storage = getattr(torch, cfg.quant_storage)
        packed_here = device.type == "cpu" and resolve_cpu_kernel(cfg.cpu_kernel) == "packed"
        kernels: dict[str, list[str]] = {"packed": [], "generic": []}

        layer_cls = generic_linear4bit_class()

        def make(lin: nn.Linear) -> nn.Module:
            new = layer_cls(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                    compute_dtype=compute, compress_statistics=cfg.double_quant,
                                    quant_type=cfg.quant_type, quant_storage=storage, device="meta")
            new.weight = bnb.nn.Params4bit(lin.weight.detach().float(), requires_grad=False,
                                           blocksize=cfg.blocksize, compress_statistics=cfg.double_quant,
                                           quant_type=cfg.quant_type, quant_storage=storage, module=new)
            if lin.bias is not None:
                new.bias = nn.Parameter(lin.bias.detach().to(compute), requires_grad=False)
            new = new.to(device)  # Params4bit quantizes here
            if device.type == "cpu":
                use_packed = packed_here and packed_kernel_fits(lin.out_features, lin.in_features, cfg.blocksize)
                # bitsandbytes reads this flag on every forward to decide whether to repack
                new.support_avx512bf16_for_cpu = use_packed
                if use_packed:
                    _repack_now(new, compute)
                kernels["packed" if use_packed else "generic"].append(f"{lin.out_features}x{lin.in_features}")
            return new

        names = replace_linears(model.module, make)
        if device.type == "cpu":
            if packed_here and kernels["generic"]:
                shapes = sorted(set(kernels["generic"]))
                warnings.warn(
                    f"{self.name}: {len(kernels['generic'])} linear layer(s) of shape(s) {', '.join(shapes)} "
                    f"do not fit bitsandbytes' packed AVX512-BF16 kernel (out_features % {PACKED_BLOCK_N}, "
                    f"in_features % blocksize {cfg.blocksize}); they run its generic 4-bit path "
                    "(still 4-bit, computed in the compute dtype instead of bfloat16)",
                    KernelPathWarning, stacklevel=3)
            return {"kernels": {f"cpu-{k}": len(v) for k, v in kernels.items() if v}}
        return {"kernels": {device.type: len(names)}}


_GENERIC_CLASS: type | None = None


def dequantize_flat(weight: torch.Tensor, state) -> torch.Tensor:
    """The dequantized ``[out, in]`` weight of a bitsandbytes 4-bit ``Params4bit``, computed over the flat
    tensor (blocks of ``blocksize`` consecutive elements, as ``quantize_4bit`` made them), then reshaped."""
    import copy

    from bitsandbytes.functional import dequantize_4bit

    flat = copy.copy(state)
    flat.shape = torch.Size([state.shape.numel()])
    return dequantize_4bit(weight, flat).reshape(state.shape)


def generic_linear4bit_class() -> type:
    """``bnb.nn.Linear4bit`` whose generic CPU path dequantizes the flat weight (see the module doc);
    the packed CPU path and CUDA are bitsandbytes' own."""
    global _GENERIC_CLASS
    if _GENERIC_CLASS is None:
        import bitsandbytes as bnb
        import torch.nn.functional as F

        class Linear4bitFlat(bnb.nn.Linear4bit):
            """bitsandbytes 4-bit linear layer; on the CPU's generic path, the weight is dequantized flat."""

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                if x.device.type != "cpu" or self.support_avx512bf16_for_cpu:
                    return super().forward(x)
                dtype = self.compute_dtype or x.dtype
                w = dequantize_flat(self.weight.data, self.weight.quant_state).to(dtype)
                bias = None if self.bias is None else self.bias.to(dtype)
                return F.linear(x.to(dtype), w, bias).to(x.dtype)

        _GENERIC_CLASS = Linear4bitFlat
    return _GENERIC_CLASS


class KernelPathWarning(UserWarning):
    """A quantizer ran some layers on another kernel path than the one it chose for the model."""


def _repack_now(layer: nn.Module, compute: torch.dtype) -> None:
    """Let bitsandbytes repack ``layer`` for its packed CPU kernel now (it does so on the first inference
    forward), so the weight is stored in its final form before it is counted or cached."""
    was_training = layer.training
    layer.eval()
    with torch.no_grad():
        layer(torch.zeros(1, layer.in_features, dtype=compute))
    layer.train(was_training)


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
