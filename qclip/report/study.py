"""Selections of result rows for the study section of Bouguerra et al. ("Less Precise Can Be More
Reliable"; :mod:`.sections_study`, :mod:`.plots_study`): the simulated-family quantizer names parsed into
bits and method, the models grouped by pre-training source, the in-distribution dataset, and the per-model
values the study's figures draw (pandas only, no drawing, no formulas: the relative ECE change and the
spurious-gap numbers are the ones the cells recorded with :mod:`qclip.metrics`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from qclip.models.specs import TRAINING_SOURCES, training_source
from qclip.report.data import FP32, paired, select

__all__ = [
    "SOURCE_COLORS",
    "STUDY_FAMILIES",
    "QuantName",
    "accuracy_vs_ece",
    "id_dataset",
    "parse_quantizer",
    "relative_ece",
    "simulated_quantizers",
    "source_of",
    "source_order",
    "spurious_datasets",
    "top1_by_bits",
]

STUDY_FAMILIES = ("simulated", "qat")
"""The weight × activation families of the study's grid: post-training (``w4a8``, ``w4a8-gptq``,
``w4a8-rot``...) and quantization-aware training (``w4a8-lsq``...)."""

SOURCE_COLORS = {"WIT": "#1f77b4", "LAION": "#d95f02", "DataComp": "#2ca02c", "DFN": "#9467bd",
                 "WebLI": "#e7298a", "COYO": "#8c564b", "MetaCLIP": "#17becf", "unknown": "#7f7f7f"}
"""One colour per pre-training source (a tiny model's ``WIT-like`` shares WIT's): WIT blue and LAION orange
as in the paper's Fig. 1."""


@dataclass(frozen=True)
class QuantName:
    """A simulated-family quantizer name read by its family's ``NAME_RE``: ``w4a8-rot-gptq-vision`` is
    W4, A8, method ``rot-gptq``, scope ``vision``."""

    name: str
    family: str  # "simulated" (post-training) or "qat"
    weight_bits: int
    act_bits: int
    method: str  # rtn, gptq, smooth, smooth-gptq, rot, rot-gptq, lsq, lsq-distill, rot-lsq...
    scope: str  # both, vision, text

    @property
    def series(self) -> str:
        """The line of Fig. 3 this quantizer belongs to: its method, with the activation bits and the scope
        when they are not the grid's A8 on both towers."""
        extra = ([f"A{self.act_bits}"] if self.act_bits != 8 else []) + ([self.scope] if self.scope != "both" else [])
        return self.method + (f" ({', '.join(extra)})" if extra else "")


@functools.lru_cache(maxsize=1)
def _patterns():
    """(family, NAME_RE) of the two families, imported on first use (they import torch)."""
    from qclip.quantize import qat, simulated

    return (("qat", qat.NAME_RE), ("simulated", simulated.NAME_RE))


@functools.lru_cache(maxsize=512)
def parse_quantizer(name: str) -> QuantName | None:
    """The bits, method and scope of a simulated-family quantizer name, or None for any other quantizer."""
    for family, regex in _patterns():
        m = regex.match(str(name))
        if not m:
            continue
        transform = m["transform"] or ""
        if family == "qat":
            method = "-".join(p for p in (transform, "lsq", "distill" if m["distill"] else "") if p)
        else:
            base = m["method"] or "rtn"
            method = "-".join(p for p in (transform, "" if transform and base == "rtn" else base) if p)
        return QuantName(name, family, int(m["w"]), int(m["a"]), method, m["scope"] or "both")
    return None


def simulated_quantizers(rows: pd.DataFrame) -> list[str]:
    """The run's quantizers of the study's families, sorted."""
    if rows is None or rows.empty:
        return []
    return sorted(q for q in rows["quantizer"].unique() if parse_quantizer(q) is not None)


@functools.lru_cache(maxsize=256)
def source_of(model: str) -> str:
    """The pre-training source of a model spec as the report groups it (:func:`qclip.models.training_source`)."""
    return training_source(model)


def source_order(sources) -> list[str]:
    """Sources in :data:`qclip.models.specs.TRAINING_SOURCES` order, unknown names last."""
    known = {s: i for i, s in enumerate(TRAINING_SOURCES)}
    return sorted(set(sources), key=lambda s: (known.get(s, len(known)), s))


def source_color(source: str) -> str:
    return SOURCE_COLORS.get(source.removesuffix("-like"), SOURCE_COLORS["unknown"])


def id_dataset(rows: pd.DataFrame, benchmark: str, metric: str) -> str | None:
    """The in-distribution dataset of ``benchmark``/``metric``: the one with the most models, then the
    shortest name (``synth-imagenet`` before ``synth-imagenet-shift``, ``imagenet`` before ``imagenet-v2``)."""
    sel = select(rows, benchmark, [metric])
    sel = sel[sel["subgroup"] == ""]
    if sel.empty:
        return None
    counts = sel.groupby("dataset")["model"].nunique()
    return sorted(counts.index, key=lambda d: (-counts[d], len(d), d))[0]


def top1_by_bits(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, str | None]:
    """Fig. 3's data: ``(per-model frame, fp32 top-1 per model, dataset)``. The frame has one row per
    (model, simulated-family quantizer) of the ID dataset's zero-shot top-1: ``model, quantizer, series,
    method, weight_bits, act_bits, scope, value``."""
    ds = id_dataset(rows, "zeroshot", "top1")
    if ds is None:
        return pd.DataFrame(), pd.Series(dtype=float), None
    sel = select(rows, "zeroshot", ["top1"], dataset=ds)
    sel = sel[sel["subgroup"] == ""]
    fp32 = sel[sel["quantizer"] == FP32].groupby("model")["value"].mean()
    refs = paired(sel).groupby("model")["reference"].mean()
    fp32 = fp32.combine_first(refs)
    out = []
    for (model, q), part in sel.groupby(["model", "quantizer"]):
        parsed = parse_quantizer(q)
        if parsed is None:
            continue
        out.append({"model": model, "quantizer": q, "series": parsed.series, "method": parsed.method,
                    "weight_bits": parsed.weight_bits, "act_bits": parsed.act_bits, "scope": parsed.scope,
                    "value": float(part["value"].mean())})
    return pd.DataFrame(out), fp32, ds


def relative_ece(rows: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Per (model, quantizer) of the ID calibration dataset: ``rel`` (the recorded relative ECE change),
    ``acc_delta`` (accuracy, quantized − fp32), ``source``; and the dataset."""
    ds = id_dataset(rows, "calibration", "relative_ece_change")
    if ds is None:
        return pd.DataFrame(columns=["model", "quantizer", "rel", "acc_delta", "source"]), None
    keys = ["model", "quantizer"]
    rel = paired(select(rows, "calibration", ["relative_ece_change"], dataset=ds)).groupby(keys)["value"].mean()
    acc = paired(select(rows, "calibration", ["accuracy"], dataset=ds)).groupby(keys)["delta"].mean()
    out = pd.concat([rel.rename("rel"), acc.rename("acc_delta")], axis=1).reset_index()
    out = out[np.isfinite(out["rel"].to_numpy(dtype=float))]
    out["source"] = [source_of(m) for m in out["model"]]
    return out.reset_index(drop=True), ds


def accuracy_vs_ece(rows: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Fig. 1's points: :func:`relative_ece` with a finite accuracy change."""
    data, ds = relative_ece(rows)
    ok = [math.isfinite(x) for x in data["acc_delta"]] if not data.empty else []
    return data[ok].reset_index(drop=True) if len(ok) else data, ds


def spurious_datasets(rows: pd.DataFrame) -> list[str]:
    """The robustness datasets whose cells recorded the spurious gap."""
    sel = select(rows, "robustness", ["delta_rsg", "vuln_add", "rsg"], finite=False)
    return sorted(sel["dataset"].unique()) if not sel.empty else []
