"""How much of a model a quantizer reached, and how many bytes its weights take as stored.

A linear layer (see ``ClipModel.linear_layers``) is *quantized* when its weight storage is not the
original float32: bitsandbytes ``Int8Params``/``Params4bit``, a torch.ao packed ``qint8`` weight, a
torchao tensor subclass, an HQQ ``HQQLinear`` (``hqq-int<bits>``), an optimum-quanto weight
(``quanto-int8``, ``quanto-int4``), or a plain float16/bfloat16 tensor. :func:`weight_bytes` counts every
parameter and buffer as stored: packed int8/4-bit data plus the scales and quantization statistics that
live outside ``parameters()`` (bitsandbytes ``SCB`` and ``quant_state``, torch.ao packed params, the
inner tensors of torchao and quanto subclasses, HQQ's scales and zero points in ``meta``).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "layer_storage",
    "is_quantized",
    "tensor_bytes",
    "weight_bytes",
    "fp32_weight_bytes",
    "coverage",
    "make_report",
    "CoverageWarning",
]


class CoverageWarning(UserWarning):
    """A quantizing method left some linear layers unquantized."""


def _is_bnb(obj: object, cls_name: str) -> bool:
    cls = type(obj)
    return cls.__name__ == cls_name and cls.__module__.startswith("bitsandbytes")


def _is_hqq(layer: object) -> bool:
    return type(layer).__module__.startswith("hqq") or any(
        c.__name__ == "HQQLinear" and c.__module__.startswith("hqq") for c in type(layer).__mro__)


def _hqq_tensors(layer: nn.Module) -> list[torch.Tensor]:
    """An HQQLinear's scales, zero points (in ``meta``, a plain dict) and bias (a plain attribute)."""
    meta = getattr(layer, "meta", None) or {}
    out = [meta[k] for k in ("scale", "zero", "zero_scale", "scale_q", "zero_q") if isinstance(meta.get(k), torch.Tensor)]
    if isinstance(layer.__dict__.get("bias"), torch.Tensor):  # not a registered parameter or buffer
        out.append(layer.__dict__["bias"])
    return out


def _is_wrapper_subclass(t: object) -> bool:
    return isinstance(t, torch.Tensor) and hasattr(type(t), "__tensor_flatten__")


def _dyn_weight(layer: nn.Module) -> torch.Tensor | None:
    """The packed weight of a torch.ao quantized Linear (its ``weight`` is a method)."""
    w = getattr(layer, "weight", None)
    if callable(w) and not isinstance(w, torch.Tensor):
        try:
            return w()
        except Exception:  # noqa: BLE001 - an unpackable weight is reported as "unknown"
            return None
    return None


def layer_storage(layer: nn.Module) -> str:
    """How the layer's weight is stored: ``float32``, ``float16``, ``bfloat16``, ``int8`` (bitsandbytes
    LLM.int8), ``nf4``/``fp4`` (bitsandbytes 4-bit), ``qint8`` (torch.ao), a torchao subclass name,
    ``hqq-int<bits>`` (HQQ), ``quanto-int8``/``quanto-int4`` (optimum-quanto; ``quanto-float8_e4m3fn``...), or
    ``fake-int<bits>`` (brevitas fake quantization: float32 weights rounded to the grid on every call)."""
    storage = getattr(layer, "qclip_storage", None)  # a layer that names its storage (qclip's own: LSQ's fake-int<bits>)
    if isinstance(storage, str):
        return storage
    dyn = _dyn_weight(layer)
    if dyn is not None:
        return str(dyn.dtype).removeprefix("torch.")
    if type(layer).__module__.startswith("brevitas"):  # fake quant: float weights rounded on the fly
        bits = getattr(getattr(layer, "weight_quant", None), "bit_width", None)
        try:
            bits = int(bits()) if callable(bits) else int(bits)
        except Exception:  # noqa: BLE001 - a quantizer without a fixed width
            bits = "?"
        return f"fake-int{bits}"
    if _is_hqq(layer):  # no weight: packed W_q plus scales and zero points in meta
        meta = getattr(layer, "meta", None) or {}
        return f"hqq-int{meta['nbits']}" if "nbits" in meta else "unknown"
    w = getattr(layer, "weight", None)
    if not isinstance(w, torch.Tensor):
        return "unknown"
    qtype = getattr(w, "qtype", None)
    if type(w).__module__.startswith("optimum.quanto") and qtype is not None:  # quanto-int8, quanto-int4
        return "quanto-" + str(getattr(qtype, "name", qtype)).removeprefix("q")
    if _is_bnb(w, "Params4bit"):
        return str(w.quant_type) if getattr(w, "bnb_quantized", False) else str(w.dtype).removeprefix("torch.")
    if _is_wrapper_subclass(w):
        return type(w).__name__
    return str(w.dtype).removeprefix("torch.")


def is_quantized(layer: nn.Module) -> bool:
    """Whether the layer's weight is stored in anything but float32."""
    return layer_storage(layer) != "float32"


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of ``t`` as stored (inner tensors of wrapper subclasses such as torchao's, summed)."""
    if _is_wrapper_subclass(t):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()  # qint8 tensors: 1 byte per element


def _quant_state_tensors(state) -> list[torch.Tensor]:
    if state is None:
        return []
    out = [getattr(state, a, None) for a in ("absmax", "code", "offset")]
    out += _quant_state_tensors(getattr(state, "state2", None))
    return [t for t in out if isinstance(t, torch.Tensor)]


def _extra_tensors(module: nn.Module) -> list[torch.Tensor]:
    """Quantization data held outside ``parameters()``/``buffers()`` of ``module`` itself."""
    extra: list[torch.Tensor] = []
    w = module._parameters.get("weight") if hasattr(module, "_parameters") else None
    if _is_bnb(w, "Int8Params"):
        scb = w.SCB if w.SCB is not None else getattr(getattr(module, "state", None), "SCB", None)
        if isinstance(scb, torch.Tensor):
            extra.append(scb)
    elif _is_bnb(w, "Params4bit"):
        extra += _quant_state_tensors(w.quant_state)
    if _is_hqq(module):
        extra += _hqq_tensors(module)
    dyn = _dyn_weight(module)
    if dyn is not None:
        extra.append(dyn)
        if dyn.is_quantized and dyn.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            extra += [dyn.q_per_channel_scales(), dyn.q_per_channel_zero_points()]
        elif dyn.is_quantized:
            extra.append(torch.zeros(2, dtype=torch.float64))  # scale + zero point
        bias = module.bias() if callable(getattr(module, "bias", None)) else None
        if isinstance(bias, torch.Tensor):
            extra.append(bias)
    return extra


def _key(t: torch.Tensor):
    if _is_wrapper_subclass(t) or t.is_quantized or t.device.type == "meta":
        return ("id", id(t))
    return ("ptr", t.device.type, t.untyped_storage().data_ptr(), t.storage_offset(), t.numel(), t.dtype)


def weight_bytes(module: nn.Module) -> int:
    """Bytes of all parameters and buffers of ``module`` as stored, incl. quantization statistics.

    Shared tensors are counted once.
    """
    seen: set = set()
    alive: list = []  # keeps temporaries (unpacked torch.ao weights) alive so ids/pointers stay unique
    total = 0
    for sub in module.modules():
        tensors = [*sub._parameters.values(), *sub._buffers.values(), *_extra_tensors(sub)]
        alive.append(tensors)
        for t in tensors:
            if not isinstance(t, torch.Tensor):
                continue
            k = _key(t)
            if k in seen:
                continue
            seen.add(k)
            total += tensor_bytes(t)
    return total


def fp32_weight_bytes(module: nn.Module) -> int:
    """Bytes the parameters and buffers would take with every floating tensor in float32."""
    seen: set = set()
    total = 0
    for sub in module.modules():
        for t in [*sub._parameters.values(), *sub._buffers.values()]:
            if not isinstance(t, torch.Tensor) or _key(t) in seen:
                continue
            seen.add(_key(t))
            total += t.numel() * (4 if t.is_floating_point() else t.element_size())
    return total


def coverage(model, is_target: Callable[[str], bool] | None = None) -> dict:
    """``{"coverage": {tower: {"quantized", "total"}}, "unquantized_layers": [...], "storage": {...}}``.

    A layer counts as quantized when ``is_target(layer_storage(layer))`` (default: anything but
    float32); a quantizer that also casts the model (``ao-int4wo`` casts to bfloat16 first) passes a
    stricter test so layers it skipped are not hidden behind the cast. ``unquantized_layers`` also lists
    projections the backend could not turn into Linear layers (``module._qclip_raw_projections``), which
    no module-swapping quantizer reaches.
    """
    is_target = is_target or (lambda kind: kind != "float32")
    from ..models.attention import RAW_PROJECTIONS_ATTR

    cov: dict[str, dict[str, int]] = {}
    unquantized: list[str] = []
    storage: Counter = Counter()
    for tower, layers in model.linear_layers().items():
        q = 0
        for name, layer in layers:
            kind = layer_storage(layer)
            storage[kind] += 1
            if is_target(kind):
                q += 1
            else:
                unquantized.append(name)
        cov[tower] = {"quantized": q, "total": len(layers)}
    for name in getattr(model.module, RAW_PROJECTIONS_ATTR, []):
        p = model.module.get_parameter(name)
        if p.dtype == torch.float32 and not _is_wrapper_subclass(p):
            unquantized.append(name)
    return {"coverage": cov, "unquantized_layers": unquantized, "storage": dict(storage)}


def make_report(model, quantizer: str, config: dict, fp32_bytes: int, *, expect_full: bool = True,
                is_target: Callable[[str], bool] | None = None) -> dict:
    """The ``model.quant_report`` dict; warns (:class:`CoverageWarning`) when a quantizing method left
    layers unquantized (see :func:`coverage` for ``is_target``)."""
    cov = coverage(model, is_target)
    report = {
        "quantizer": quantizer,
        "config": config,
        "coverage": cov["coverage"],
        "storage": cov["storage"],
        "weight_bytes": weight_bytes(model.module),
        "fp32_weight_bytes": fp32_bytes,
        "unquantized_layers": cov["unquantized_layers"],
        "device": str(model.device),
    }
    if expect_full and report["unquantized_layers"]:
        n = len(report["unquantized_layers"])
        warnings.warn(f"{quantizer}: {n} linear layer(s) left unquantized: "
                      f"{', '.join(report['unquantized_layers'][:8])}{' ...' if n > 8 else ''}",
                      CoverageWarning, stacklevel=3)
    return report
