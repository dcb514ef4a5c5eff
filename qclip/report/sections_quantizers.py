"""The Quantizers section: per quantizer of the run, its family, bits, scheme, arithmetic (simulated
fake-quant, real integer/low-bit kernels, or the float reference) and what it quantizes (weights,
weights + activations, with its scope), as each quantizer's ``describe()`` says. Fields a quantizer does
not describe read "—", so a report of an older or a third-party quantizer still renders."""

from __future__ import annotations

import pandas as pd

from qclip.report.blocks import Para, Section, Table
from qclip.report.data import quantizer_order

__all__ = ["describe_quantizer", "quantizer_table", "quantizers_section"]

_NONE = "—"
_COLUMNS = (("family", "Family"), ("bits", "Bits"), ("arithmetic", "Arithmetic"), ("quantizes", "Quantizes"),
            ("scheme", "Scheme"))


def describe_quantizer(name: str) -> dict:
    """``describe()`` of the registered quantizer ``name`` as the installed qclip builds it; ``{}`` when the
    name is not registered here or describing it fails (a report never fails on a quantizer)."""
    try:
        from qclip.quantize import create_quantizer

        desc = create_quantizer(name).describe()
    except Exception:  # noqa: BLE001 - an unknown or broken quantizer costs its row's fields, not the report
        return {}
    return desc if isinstance(desc, dict) else {}


def _text(value) -> str:
    if value is None or value == "" or (isinstance(value, (list, tuple, dict)) and not value):
        return _NONE
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def quantizer_table(quantizers, describe=describe_quantizer) -> pd.DataFrame:
    """One row per quantizer (fp32 first): the :data:`_COLUMNS` fields of ``describe(name)`` read with
    ``.get``, "—" when absent."""
    out = []
    for q in quantizer_order(quantizers):
        desc = describe(q) or {}
        out.append({"Quantizer": q, **{label: _text(desc.get(key)) for key, label in _COLUMNS}})
    return pd.DataFrame(out, columns=["Quantizer", *(label for _, label in _COLUMNS)])


def quantizers_section(rows: pd.DataFrame, describe=describe_quantizer) -> Section:
    sec = Section("Quantizers")
    if rows is None or rows.empty:
        sec.blocks.append(Para("No quantizer produced rows in this run."))
        return sec
    sec.blocks.append(Table(quantizer_table(rows["quantizer"].unique(), describe),
                            "As each quantizer's describe() reads in the installed qclip. Arithmetic: *simulated* "
                            "(fake-quant: values rounded to the low-bit grid, computed in float32), *real* (low-bit "
                            "or integer kernels) or *reference* (the float model). Quantizes: what is rounded, and "
                            "in which tower."))
    return sec
