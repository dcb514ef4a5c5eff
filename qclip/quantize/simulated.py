"""Simulated (fake-quant) weight × activation quantization with brevitas: ``w8a8``, ``w6a8``, ``w4a8``.

The axis of "Less Precise Can Be More Reliable" (Bouguerra et al.): every ``nn.Linear`` of the chosen
towers (attention q/k/v/out included: qclip splits attention into Linear layers) becomes a brevitas
``QuantLinear`` with

* weights at ``weight_bits``, symmetric, one scale per output channel (``per-channel``) or per tensor;
* input activations at ``act_bits``, one static scale per tensor (symmetric, or asymmetric with a zero
  point), fitted on the calibration pairs with brevitas' ``calibration_mode`` by an observer:
  ``percentile`` (brevitas' default, the 99.999th percentile of |x|), ``minmax`` or ``mse``;
* ``transform`` (before quantizing, exact in float32): none, ``smooth`` (SmoothQuant's activation
  equalization, :mod:`.equalize`, option ``smooth_alpha``) or ``rot`` (Hadamard rotation, QuaRot-style,
  :mod:`.rotation`, option ``rotation_seed``);
* ``method``: ``rtn`` (round to nearest) or ``gptq`` (brevitas' ``gptq_mode``, Frantar et al. 2022: the
  weights are re-rounded layer by layer to minimise the output error on the calibration inputs; the
  weight scales are learnable parameters initialised from the weights' statistics, since with
  scales recomputed from the weights on every call brevitas' GPTQ changes nothing).

The arithmetic is simulated: values are rounded to the integer grid and computed in float32 (brevitas'
fake quantization), not run on integer kernels; ``describe()`` says so. ``scope`` picks the towers:
``both`` (default), ``vision`` or ``text``; the coverage report counts the other tower as unquantized
(deliberately: the report says what was left in fp32).

Names: ``w{W}a{A}[-{transform}][-{method}][-{scope}]``, e.g. ``w4a8``, ``w6a8-rtn``, ``w4a8-gptq-vision``,
``w4a8-smooth``, ``w4a8-rot-gptq``; QAT (``w4a8-lsq``, ``w4a8-rot-lsq-distill``) is :mod:`.qat`. A few are
registered (:data:`DEFAULT_NAMES`, the main job's), and every other combination resolves on demand
(``--qclip-quantizers w6a8-gptq-text``; the study's grid: ``--qclip-quantizers 'w[468]a8*'`` lists the
registered ones, :func:`grid_names` all of them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from ._sites import TOWERS_OF_SCOPE
from ._swap import replace_named
from .base import BaseQuantizer, QuantizerSpec, _fixed, register_quantizer, register_quantizer_pattern

__all__ = ["SimQuantSpec", "SimulatedQuantizer", "DEFAULT_NAMES", "NAME_RE", "grid_names", "simulated_quantizer",
           "reparametrise", "TRANSFORMS"]

_OBSERVERS = ("percentile", "minmax", "mse")
_GRANULARITY = ("per-channel", "per-tensor")
_METHODS = ("rtn", "gptq")
_SCOPES = ("both", "vision", "text")
TRANSFORMS = ("none", "smooth", "rot")
#: the name's parts, in this order; ``-k w4a8-rot`` selects rotation with RTN and GPTQ, ``-k rot-gptq`` only the second
NAME_RE = re.compile(r"^w(?P<w>[2-8])a(?P<a>[4-8]|16)(?:-(?P<transform>smooth|rot))?(?:-(?P<method>rtn|gptq))?"
                     r"(?:-(?P<scope>vision|text|both))?$")
#: registered (listed, and run by the main job): the bit-width ladder with RTN, and W4A8 GPTQ (10-25 s per
#: tiny model on 2 cores); the other methods (smooth, rot, rot-gptq) and scopes run by name
DEFAULT_NAMES = ("w8a8", "w6a8", "w4a8", "w4a8-gptq")


@dataclass(frozen=True)
class SimQuantSpec(QuantizerSpec):
    """Options of the simulated family; ``weight_bits``/``act_bits``/``method``/``scope`` come from the name."""

    weight_bits: int = _fixed(8)
    act_bits: int = _fixed(8)
    method: str = _fixed("rtn")
    scope: str = _fixed("both")
    transform: str = _fixed("none")
    weight_granularity: str = "per-channel"
    act_observer: str = "percentile"
    act_symmetric: bool = True
    calibration_batch_size: int = 64
    smooth_alpha: float = 0.5  # SmoothQuant's migration strength (transform "smooth")
    rotation_seed: int = 0  # the random signs of the Hadamard rotations (transform "rot")

    def __post_init__(self):
        if self.transform not in TRANSFORMS:
            raise ValueError(f"Expected transform in {TRANSFORMS}, but got {self.transform!r}")
        if not isinstance(self.smooth_alpha, int | float) or not 0 <= self.smooth_alpha <= 1:
            raise ValueError(f"Expected smooth_alpha in [0, 1], but got {self.smooth_alpha!r}")
        if not isinstance(self.rotation_seed, int):
            raise ValueError(f"Expected an int rotation_seed, but got {self.rotation_seed!r}")
        if self.weight_granularity not in _GRANULARITY:
            raise ValueError(f"Expected weight_granularity in {_GRANULARITY}, but got {self.weight_granularity!r}")
        if self.act_observer not in _OBSERVERS:
            raise ValueError(f"Expected act_observer in {_OBSERVERS}, but got {self.act_observer!r}")
        if self.method not in _METHODS or self.scope not in _SCOPES:
            raise ValueError(f"Expected method in {_METHODS} and scope in {_SCOPES}, got {self.method!r}, {self.scope!r}")
        if not isinstance(self.calibration_batch_size, int) or self.calibration_batch_size <= 0:
            raise ValueError(f"Expected calibration_batch_size > 0, but got {self.calibration_batch_size!r}")


def _weight_quant(cfg: SimQuantSpec):
    from brevitas.inject.enum import ScalingImplType
    from brevitas.quant.scaled_int import Int8WeightPerChannelFloat, Int8WeightPerTensorFloat

    base = Int8WeightPerChannelFloat if cfg.weight_granularity == "per-channel" else Int8WeightPerTensorFloat
    if cfg.method == "gptq":  # learnable scales from the weights' statistics: GPTQ's updates then count
        return base.let(scaling_impl_type=ScalingImplType.PARAMETER_FROM_STATS)
    return base


def _act_quant(cfg: SimQuantSpec):
    from brevitas.quant.scaled_int import (
        Int8ActPerTensorFloat,
        Int8ActPerTensorFloatMinMaxInit,
        Int8ActPerTensorFloatMSE,
    )
    from brevitas.quant.shifted_scaled_int import (
        ShiftedUint8ActPerTensorFloat,
        ShiftedUint8ActPerTensorFloatMSE,
    )

    if cfg.act_symmetric:
        return {"percentile": Int8ActPerTensorFloat, "minmax": Int8ActPerTensorFloatMinMaxInit,
                "mse": Int8ActPerTensorFloatMSE}[cfg.act_observer]
    if cfg.act_observer == "minmax":
        raise ValueError("act_symmetric=False supports act_observer 'percentile' or 'mse'")
    return {"percentile": ShiftedUint8ActPerTensorFloat, "mse": ShiftedUint8ActPerTensorFloatMSE}[cfg.act_observer]


def _forward(model, pixels: torch.Tensor, tokens: torch.Tensor, scope: str) -> None:
    """Run the towers of ``scope`` on one calibration batch."""
    if scope in ("both", "vision"):
        model.encode_image(pixels)
    if scope in ("both", "text"):
        model.encode_text(tokens)


def reparametrise(model, cfg, batches) -> dict:
    """The float32-exact transform of ``cfg.transform`` on the towers of ``cfg.scope``, before any layer
    is swapped: SmoothQuant (:mod:`.equalize`) or the Hadamard rotation (:mod:`.rotation`)."""
    if cfg.transform == "smooth":
        from .equalize import smooth_model

        return smooth_model(model, batches, alpha=cfg.smooth_alpha, scope=cfg.scope)
    if cfg.transform == "rot":
        from .rotation import rotate_model

        return rotate_model(model, scope=cfg.scope, seed=cfg.rotation_seed)
    return {"method": "none"}


class SimulatedQuantizer(BaseQuantizer):
    """brevitas fake-quant of weights and activations; one instance per name (see the module doc)."""

    family = "simulated"
    needs_calibration = True
    arithmetic = "simulated"  # fake quantization: float32 weights and activations rounded to the grid

    def __init__(self, name: str, **options):
        m = NAME_RE.match(name)
        if not m:
            raise ValueError(f"Expected a name like w4a8, w6a8-gptq, w4a8-rot-gptq or w8a8-rtn-vision, but got {name!r}")
        self.name = name
        w, a = int(m["w"]), int(m["a"])
        method, scope, transform = m["method"] or "rtn", m["scope"] or "both", m["transform"] or "none"
        self.spec = SimQuantSpec(library="brevitas", bits=w, min_version="0.11", weight_bits=w, act_bits=a,
                                 method=method, scope=scope, transform=transform,
                                 scheme=self._scheme(w, a, method, transform))
        self.config = self.spec.with_options(**options)

    @property
    def layers(self) -> str:
        towers = {"both": "both towers", "vision": "the vision tower only", "text": "the text tower only"}
        return f"every nn.Linear of {towers[self.config.scope]}: attention q/k/v/out, MLP, final projection"

    @property
    def quantizes(self) -> str:
        from .base import TOWER_LABELS

        return f"weights+activations (static), {TOWER_LABELS[self.config.scope]}"

    @staticmethod
    def _scheme(w: int, a: int, method: str, transform: str = "none") -> str:
        how = {"none": "", "smooth": "SmoothQuant equalization + ", "rot": "Hadamard rotation + "}[transform]
        return (f"simulated W{w}A{a}: int{w} symmetric weights, int{a} static per-tensor activations from "
                f"calibration, {how}{method.upper()}; fake-quant in float32 (brevitas), not integer kernels")

    def is_target_storage(self, storage: str) -> bool:
        return storage.startswith("fake-int")

    def _apply(self, model, calibration) -> dict:
        import brevitas.nn as qnn
        from brevitas.graph.calibrate import calibration_mode

        cfg = self.config
        wq, aq = _weight_quant(cfg), _act_quant(cfg)

        def make(lin: nn.Linear) -> nn.Module:
            new = qnn.QuantLinear(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                  weight_quant=wq, weight_bit_width=cfg.weight_bits, input_quant=aq,
                                  input_bit_width=cfg.act_bits, return_quant_tensor=False,
                                  device=lin.weight.device)
            with torch.no_grad():
                new.weight.copy_(lin.weight)
                if lin.bias is not None:
                    new.bias.copy_(lin.bias)
            return new

        model.module.eval()
        batches = list(calibration.batches(model, cfg.calibration_batch_size))
        transform = reparametrise(model, cfg, batches)
        towers = model.linear_layers()
        replace_named(model.module, [name for t in TOWERS_OF_SCOPE[cfg.scope] for name, _ in towers[t]], make)
        model.module.eval()
        with torch.no_grad():
            with calibration_mode(model.module):  # static activation scales from the observer
                for px, tok in batches:
                    _forward(model, px, tok, cfg.scope)
            if cfg.method == "gptq":
                _forward(model, *batches[0], cfg.scope)  # initialises the learnable weight scales
                self._gptq(model, batches)
        return {"calibration": calibration.describe(), "arithmetic": "simulated (fake-quant, float32)",
                "transform": transform,
                "quantized": {"weights": cfg.weight_bits, "activations": cfg.act_bits, "scope": cfg.scope}}

    def _gptq(self, model, batches) -> None:
        from brevitas.graph.gptq import gptq_mode

        cfg = self.config
        with gptq_mode(model.module, use_quant_activations=True) as gptq:
            for _ in range(gptq.num_layers):
                for px, tok in batches:
                    _forward_module(model, gptq.model, px, tok, cfg.scope)
                gptq.update()


def _forward_module(model, module: nn.Module, pixels, tokens, scope: str) -> None:
    """The module's own forward (brevitas' gptq_mode hooks ``module.forward``) on one batch."""
    if type(module).__module__.startswith("transformers"):
        module(input_ids=tokens, pixel_values=pixels)
    else:
        module(pixels if scope != "text" else None, tokens if scope != "vision" else None)


def simulated_quantizer(name: str, **options) -> SimulatedQuantizer:
    """A simulated quantizer for any name matching :data:`NAME_RE`."""
    return SimulatedQuantizer(name, **options)


#: the PTQ methods of the grid, as name parts (RTN is the bare name)
PTQ_METHODS = ("", "-gptq", "-smooth", "-smooth-gptq", "-rot", "-rot-gptq")


def grid_names() -> list[str]:
    """The study's PTQ grid: W8A8, W6A8, W4A8 × RTN, GPTQ, SmoothQuant (+GPTQ), rotation (+GPTQ) ×
    both, vision, text (QAT's: :func:`qclip.quantize.qat.grid_names`)."""
    return [f"w{w}a8{m}{'' if s == 'both' else '-' + s}" for w in (8, 6, 4) for m in PTQ_METHODS for s in _SCOPES]


for _name in DEFAULT_NAMES:
    register_quantizer(name=_name)(lambda _n=_name, **opts: SimulatedQuantizer(_n, **opts))
register_quantizer_pattern(NAME_RE, simulated_quantizer)
