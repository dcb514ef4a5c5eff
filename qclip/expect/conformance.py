"""Conformance references: published fp32 numbers a run on real weights must reproduce.

The data lives in ``bench/reference/<benchmark>.yaml`` (expectations are data): per dataset name, per
model spec, ``value``, ``atol`` and optionally ``xfail_reason``. A paper model evaluated on the named
dataset with no entry is an error, so a new model cannot slip through unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["Reference", "load_references", "check_reference"]


@dataclass(frozen=True)
class Reference:
    value: float
    atol: float
    xfail_reason: str = ""


def load_references(path: Path) -> dict[str, dict[str, Reference]]:
    data = yaml.safe_load(Path(path).read_text()) or {}
    out: dict[str, dict[str, Reference]] = {}
    for dataset, models in data.items():
        out[dataset] = {}
        for spec, entry in (models or {}).items():
            if not isinstance(entry, dict) or "value" not in entry:
                raise ValueError(f"{path}: expected {{value, atol[, xfail_reason]}} for {dataset}/{spec}, "
                                 f"but got {entry!r}")
            out[dataset][spec] = Reference(float(entry["value"]), float(entry.get("atol", 0.005)),
                                           str(entry.get("xfail_reason", "")))
    return out


def check_reference(ref: Reference, measured: float, what: str) -> str:
    """'' when ``measured`` is within ``atol`` of the reference, else a message saying which way it is off."""
    diff = measured - ref.value
    if abs(diff) <= ref.atol:
        return ""
    way = "below" if diff < 0 else "above (an unexplained improvement)"
    return (f"{what}: fp32 {measured:.4f} is {abs(diff) * 100:.2f} pp {way} the published {ref.value:.4f} "
            f"(atol {ref.atol * 100:.2f} pp): check templates, preprocessing, QuickGELU and the split")
