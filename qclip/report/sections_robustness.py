"""The spectral and robustness sections: where in the fp32 spectrum the quantization noise lands,
effective rank before and after; accuracy under corruptions (relative drop) and worst-group accuracy."""

from __future__ import annotations

import math
import re

import pandas as pd

from qclip.report.blocks import Cell, Details, Heading, Section, Table
from qclip.report.common import SIG_CAPTION, figure, open_section
from qclip.report.data import finite_mean, paired, quantizer_order, short_model, stats_lookup
from qclip.report.tables import change_cell, pct_sig_cell, sig_cell, stats_table

__all__ = ["BAND_LABELS", "parse_corruption", "robustness_section", "spectral_section"]

BAND_LABELS = {"band0": "top 10% of ranks", "band1": "10–50%", "band2": "50–100%"}
_CORRUPTION = re.compile(r"^(?P<name>.+):s(?P<severity>\d+)$")

_SPECTRAL_ABOUT = (
    "SVD of the centred fp32 image features; the quantization noise (quantized − fp32 features) is projected "
    "on each fp32 principal direction. NSR per rank = noise energy / signal energy along that direction; band "
    "NSR sums over the top 10%, 10–50% and 50–100% of ranks. Effective rank (Roy & Vetterli) of the features, "
    "fp32 → quantized. SQNR per band = mean over its ranks of 10·log10(signal / noise), in dB. Band top-1 = "
    "zero-shot top-1 with the features projected on that band of the fp32 basis, fp32 → quantized: where the "
    "class information lives. Bouguerra et al. read noise concentrated in the low-energy ranks as quantization "
    "filtering fine-grained features, leaving the dominant ones intact."
)
_ROBUSTNESS_ABOUT = (
    "Zero-shot top-1 under evaluation-time corruptions (fixed seed, severities 1–3) and the relative change "
    "δ = (A_fp32 − A_q) / A_fp32 (positive = the quantized model lost more accuracy than fp32 under that "
    "corruption). Spurious correlations: worst-group accuracy on a group-annotated set. Covariate shift (the "
    "zero-shot cells on the shift sets) is in the Accuracy section."
)


def parse_corruption(subgroup: str) -> tuple[str, int] | None:
    m = _CORRUPTION.match(subgroup)
    return (m["name"], int(m["severity"])) if m else None


def _sci(x: float) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.2e}"


def _spectral_table(data: pd.DataFrame) -> pd.DataFrame:
    q = paired(data)
    # SQNR has no fp32 value (the reference is NaN), so paired() drops it: read it from the quantized rows
    sq = data[data["metric"] == "band_sqnr_db"]
    out = []
    order = {k: i for i, k in enumerate(quantizer_order(q["quantizer"]))}
    for (model, quantizer), part in sorted(q.groupby(["model", "quantizer"]), key=lambda x: (x[0][0], order[x[0][1]])):
        er = part[part["metric"] == "effective_rank"]
        row = {
            "Model": short_model(model),
            "Quantizer": quantizer,
            "Effective rank fp32 → quantized": change_cell(finite_mean(er["reference"]), finite_mean(er["value"]),
                                                           digits=2) if not er.empty else "—",
            "NSR total": _sci(finite_mean(part.loc[part["metric"] == "nsr_total", "value"])),
        }
        bands = part[part["metric"] == "band_nsr"]
        for band in sorted(bands["subgroup"].unique()):
            row[f"NSR {BAND_LABELS.get(band, band)}"] = _sci(finite_mean(bands.loc[bands["subgroup"] == band, "value"]))
        sqnr = sq[(sq["model"] == model) & (sq["quantizer"] == quantizer)]
        for band in sorted(sqnr["subgroup"].unique()):
            v = finite_mean(sqnr.loc[sqnr["subgroup"] == band, "value"])
            row[f"SQNR {BAND_LABELS.get(band, band)}"] = "—" if v is None or not math.isfinite(v) else f"{v:.1f} dB"
        top1 = part[part["metric"] == "band_top1"]
        for band in sorted(top1["subgroup"].unique()):
            b = top1[top1["subgroup"] == band]
            row[f"top-1 {BAND_LABELS.get(band, band)}"] = change_cell(finite_mean(b["reference"]),
                                                                      finite_mean(b["value"]), digits=3)
        out.append(row)
    return pd.DataFrame(out)


def spectral_section(rows: pd.DataFrame, stats: pd.DataFrame, images: dict, cells=None) -> Section:
    sec, st, data = open_section("Spectral analysis of the quantization noise", "spectral", rows, stats,
                                 _SPECTRAL_ABOUT, cells)
    if st is None:
        return sec
    sec.blocks += figure(images, "spectral", "Noise-to-signal ratio per rank over the fp32 energy spectrum",
                         "Per model: NSR per principal rank for each quantizer (solid, log scale) and the fp32 energy "
                         "share of each rank (grey, dashed); dotted lines split the bands.")
    for dataset in sorted(data["dataset"].unique()):
        table = _spectral_table(data[data["dataset"] == dataset])
        if not table.empty:
            sec.blocks.append(Table(table, f"`spectral` on `{dataset}`, per model.", group_col="Model"))
        pop = stats_table(st, "spectral", ["effective_rank", "nsr_total", "band_nsr", "band_top1"], dataset,
                          subgroup=None, labels={"effective_rank": "Effective rank", "nsr_total": "NSR total",
                                                 "band_nsr": "Band NSR", "band_top1": "Band top-1"})
        if not pop.empty:
            sec.blocks.append(Details(f"Population statistics, `{dataset}`",
                                      [Table(pop, "NSR rows test against 0 (the fp32 model has no noise). "
                                             + SIG_CAPTION, group_col="Quantizer")]))
    return sec


def _drop_table(data: pd.DataFrame, look: dict, dataset: str) -> pd.DataFrame:
    top1 = paired(data[data["metric"] == "top1"])
    parsed = [parse_corruption(s) for s in top1["subgroup"]]
    top1 = top1[[p is not None for p in parsed]]
    if top1.empty:
        return pd.DataFrame()
    quantizers = [q for q in quantizer_order(top1["quantizer"])]
    out = []
    for sub in sorted(top1["subgroup"].unique(), key=lambda s: parse_corruption(s)):
        name, sev = parse_corruption(sub)
        part = top1[top1["subgroup"] == sub]
        row = {"Corruption": name.replace("_", " "), "Severity": str(sev),
               "fp32 top-1": f"{part.groupby('model')['reference'].mean().mean():.4f}"}
        for q in quantizers:
            qp = part[part["quantizer"] == q]
            row[f"{q} top-1"] = f"{qp['value'].mean():.4f}" if not qp.empty else "—"
            r = look.get((q, "robustness", dataset, "relative_drop", sub))
            row[f"{q} δ"] = pct_sig_cell(r) if r is not None else Cell("—")
        out.append(row)
    return pd.DataFrame(out)


def _worst_group_table(look: dict, quantizers, dataset: str) -> pd.DataFrame:
    out = []
    for q in quantizers:
        wg = look.get((q, "robustness", dataset, "worst_group_accuracy", ""))
        avg = look.get((q, "robustness", dataset, "average_accuracy", ""))
        if wg is None and avg is None:
            continue
        row = {"Quantizer": q, "n": int((wg or avg).n)}
        for label, r in (("Worst-group", wg), ("Average", avg)):
            row[f"{label} fp32 → quantized"] = change_cell(r.mean_ref, r.mean_q) if r is not None else "—"
            row[f"{label} Δ"] = sig_cell(r) if r is not None else "—"
        if wg is not None and avg is not None:
            row["Gap (average − worst) fp32 → quantized"] = change_cell(avg.mean_ref - wg.mean_ref,
                                                                        avg.mean_q - wg.mean_q)
        out.append(row)
    return pd.DataFrame(out)


def robustness_section(rows: pd.DataFrame, stats: pd.DataFrame, images: dict, cells=None) -> Section:
    sec, st, data = open_section("Robustness", "robustness", rows, stats, _ROBUSTNESS_ABOUT, cells)
    if st is None:
        return sec
    sec.blocks += figure(images, "robustness", "Top-1 against corruption severity, fp32 vs quantized",
                         "Top: mean top-1 over the models; bottom: mean Δ (quantized − fp32) with its 95% CI. Severity 0 is the clean zero-shot top-1 of "
                         "the same set when it was measured.")
    look = stats_lookup(st)
    quantizers = [q for q in quantizer_order(st["quantizer"])]
    for dataset in sorted(data["dataset"].unique()):
        table = _drop_table(data[data["dataset"] == dataset], look, dataset)
        if not table.empty:
            sec.blocks.append(Table(table, f"Corruptions on `{dataset}`: mean top-1 over the models and the relative "
                                           f"change δ (positive = larger drop than fp32). {SIG_CAPTION}",
                                    group_col="Corruption"))
        wg = _worst_group_table(look, quantizers, dataset)
        if not wg.empty:
            sec.blocks.append(Heading(f"Worst-group accuracy (spurious correlations), `{dataset}`"))
            sec.blocks.append(Table(wg, "Means over the models. " + SIG_CAPTION))
            groups = stats_table(st, "robustness", ["group_accuracy"], dataset, subgroup=None,
                                 labels={"group_accuracy": "Accuracy"})
            if not groups.empty:
                sec.blocks.append(Details(f"Accuracy per group, `{dataset}`",
                                          [Table(groups, SIG_CAPTION, group_col="Quantizer")]))
    return sec



