"""A tower scope for every quantizer: ``NAME-vision`` and ``NAME-text`` (``NAME`` alone is both towers).

The simulated and QAT families carry a scope in their own names (``w4a8-gptq-vision``). Every other
registered quantizer gets one here: ``bnb-nf4-vision`` quantizes the vision tower with ``bnb-nf4`` and
leaves the text tower in float32 (and ``-text`` the other way round). It runs the quantizer unchanged on
the whole model, then puts back the float32 modules of the tower out of scope, so it works whatever the
quantizer swaps or rewrites (bitsandbytes layers, ``quantize_dynamic``, torchao tensor subclasses, HQQ,
quanto). The coverage report counts the tower left alone (0 of N quantized, deliberately), the cell id
carries the name, and the cache key the scope.

Half-precision casts (``fp16``, ``bf16``) and ``fp32`` have no scope: a cast changes modules outside both
towers (open_clip's token embedding and final norm) that the towers then meet in another dtype.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from torch import nn

from .base import TOWER_LABELS, register_quantizer_pattern

__all__ = ["ScopedQuantizer", "SCOPE_RE", "scoped_quantizer", "UNSCOPED_FAMILIES"]

SCOPE_RE = re.compile(r"^(?P<base>.+)-(?P<scope>vision|text)$")
#: families that have no tower scope (a dtype cast of the whole module), or carry it in their own names
UNSCOPED_FAMILIES = ("precision", "simulated", "qat")
_TOWER_OF_SCOPE = {"vision": "image", "text": "text"}


def _base(name: str):
    """(the registered quantizer's name, scope) of a scoped name, or None."""
    from .base import _ENTRY_POINTS, _PATTERNS, _REGISTRY, _load_entry_points

    m = SCOPE_RE.match(name)
    if not m or any(p.match(name) for p, _ in _PATTERNS if not isinstance(p, _Pattern)):
        return None  # a family whose names carry their own scope (w4a8-gptq-vision) resolves it
    _load_entry_points()
    if name in _REGISTRY or name in _ENTRY_POINTS or m["base"] not in _REGISTRY:
        return None  # a quantizer registered under the full name is itself; only registered bases get a scope
    return m["base"], m["scope"]


class _Pattern:
    """What :func:`register_quantizer_pattern` matches: scoped names of registered quantizers only."""

    def match(self, name: str):
        return _base(name) is not None


class ScopedQuantizer:
    """``inner`` (a registered quantizer) restricted to one tower: ``scope`` ``vision`` or ``text``."""

    def __init__(self, name: str, **options: Any):
        from .base import create_quantizer

        found = _base(name)
        if found is None:
            raise KeyError(f"Expected a registered quantizer followed by -vision or -text, but got {name!r}")
        base, scope = found
        inner = create_quantizer(base, **options)
        family = getattr(inner, "family", "")
        if family in UNSCOPED_FAMILIES or not hasattr(inner, "_apply"):
            raise ValueError(f"{name}: {base} (family {family or type(inner).__name__!r}) has no tower scope; "
                             f"scoped names exist for the quantizers that swap or rewrite Linear layers")
        self.name, self.scope, self.inner = name, scope, inner

    def __getattr__(self, attr: str) -> Any:  # config, family, needs_calibration, arithmetic, ...
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    @property
    def quantizes(self) -> str:
        what = re.sub(r", (both towers|vision tower|text tower)$", "", self.inner.quantizes)
        return f"{what}, {TOWER_LABELS[self.scope]}"

    @property
    def layers(self) -> str:
        return f"{self.inner.layers}; {TOWER_LABELS[self.scope]} only"

    def available(self, device=None) -> tuple[bool, str]:
        ok, reason = self.inner.available(device)
        return ok, reason.replace(self.inner.name, self.name, 1) if reason else reason

    def config_json(self) -> str:
        return json.dumps({"name": self.name, "scope": self.scope, "inner": json.loads(self.inner.config_json())},
                          sort_keys=True)

    def resolved_config(self, device=None) -> dict:
        return {**self.inner.resolved_config(device), "scope": self.scope}

    def describe(self, model=None) -> dict:
        out = self.inner.describe(model)
        out.update(name=self.name, scope=self.scope, quantizes=self.quantizes, layers=self.layers,
                   config={**out.get("config", {}), "scope": self.scope})
        return out

    def quantize(self, model, calibration=None):
        """Quantize ``model`` in place with the inner quantizer, then restore the tower out of scope."""
        from .calibration import call_quantize
        from .coverage import make_report

        model.prepare_for_quantization()
        other = "text" if self.scope == "vision" else "image"
        kept = _snapshot(model.module, model.towers()[other])
        call_quantize(self.inner, model, calibration)
        inner_report = model.quant_report or {}
        for parent, attr, module in kept:
            setattr(parent, attr, module)
        report = make_report(model, self.name, self.resolved_config(model.device),
                             inner_report.get("fp32_weight_bytes", 0), expect_full=False,
                             is_target=getattr(self.inner, "is_target_storage", None))
        for key in ("kernels", "transform"):
            if key in inner_report:
                report[key] = inner_report[key]
        report["scope"] = self.scope
        cov = report["coverage"]
        if cov[_TOWER_OF_SCOPE[self.scope]]["quantized"] == 0:
            raise RuntimeError(f"{self.name}: quantized no Linear layer of the {TOWER_LABELS[self.scope]}")
        model.quant_report = report
        return model

    def __repr__(self) -> str:
        return f"ScopedQuantizer({self.name!r}, inner={self.inner!r})"


def _snapshot(root: nn.Module, modules: list[nn.Module]) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, float32 copy) of each of ``modules`` under ``root``: what to put back."""
    wanted = {id(m) for m in modules}
    out = []
    for _, parent in root.named_modules():
        for attr, child in parent.named_children():
            if id(child) in wanted:
                out.append((parent, attr, copy.deepcopy(child)))
    return out


def scoped_quantizer(name: str, **options: Any) -> ScopedQuantizer:
    """A scoped quantizer for ``NAME-vision`` / ``NAME-text`` of a registered ``NAME``."""
    return ScopedQuantizer(name, **options)


register_quantizer_pattern(_Pattern(), scoped_quantizer)
