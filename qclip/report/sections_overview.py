"""The overview sections: "At a glance" (one row per quantizer across every family) and the cost
table (bytes, throughput and the accuracy they buy, per model × quantizer)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from qclip.report.blocks import Cell, Para, Section, Table
from qclip.report.common import empty
from qclip.report.data import FP32, finite_mean, paired, quantizer_order, select, short_model
from qclip.report.sections_fairness import FACET_SUMMARY, FAIRFACE_SUMMARY
from qclip.report.tables import compact_sig_cell, fmt, fmt_p
from qclip.stats import MIN_N

__all__ = ["cost_section", "glance_section"]

_COST = (
    ("weight_bytes", "Weights (MB)", 1e-6),
    ("image_items_per_s", "Images/s", 1.0),
    ("text_items_per_s", "Texts/s", 1.0),
    ("peak_memory_bytes", "Peak memory (MB)", 1e-6),
)


def _main_dataset(sel: pd.DataFrame) -> str | None:
    """The dataset with the most models (ties: alphabetical)."""
    if sel.empty:
        return None
    counts = sel.groupby("dataset")["n"].max()
    return sorted(counts.index, key=lambda d: (-counts[d], d))[0]


def _one(st: pd.DataFrame, q: str, benchmark: str, metric: str, subgroup: str = "") -> Cell | str:
    sel = st[(st["quantizer"] == q) & (st["benchmark"] == benchmark) & (st["metric"] == metric)
             & (st["subgroup"] == subgroup)]
    ds = _main_dataset(sel)
    if ds is None:
        return "—"
    return compact_sig_cell(next(sel[sel["dataset"] == ds].itertuples(index=False)))


def _mean_q(st: pd.DataFrame, q: str, benchmark: str, metric: str) -> float:
    """The quantized models' mean value of ``metric`` (overall row) on the dataset with the most models."""
    sel = st[(st["quantizer"] == q) & (st["benchmark"] == benchmark) & (st["metric"] == metric)
             & (st["subgroup"] == "")]
    ds = _main_dataset(sel)
    if ds is None:
        return math.nan
    return float(sel[sel["dataset"] == ds]["mean_q"].iloc[0])


def _flips(st: pd.DataFrame, q: str) -> str:
    """Zero-shot top-1 flips vs fp32: ``3.1% (2.0% →wrong, 1.1% →right)``, means over the models."""
    rate = _mean_q(st, q, "zeroshot", "flip_rate")
    if not math.isfinite(rate):
        return "—"
    r2w, w2r = _mean_q(st, q, "zeroshot", "flip_right_to_wrong"), _mean_q(st, q, "zeroshot", "flip_wrong_to_right")
    parts = f" ({100 * r2w:.1f}% →wrong, {100 * w2r:.1f}% →right)" if math.isfinite(r2w) and math.isfinite(w2r) else ""
    return f"{100 * rate:.1f}%{parts}"


def _plain_mean(st: pd.DataFrame, q: str, metric: str, digits: int) -> str:
    x = _mean_q(st, q, "zeroshot", metric)
    return "—" if not math.isfinite(x) else (f"{x:.1e}" if 0 < abs(x) < 10 ** -digits else f"{x:.{digits}f}")


def _marks(st: pd.DataFrame, q: str, benchmark: str, pattern: str) -> str:
    sel = st[(st["quantizer"] == q) & (st["benchmark"] == benchmark) & st["metric"].str.fullmatch(pattern)]
    sel = sel[~sel["subgroup"].str.contains(r"/(?!uniform$)", regex=True)]
    if sel.empty:
        return "—"
    tested = int((sel["n"] >= MIN_N).sum())
    if not tested:
        return f"n too small ({len(sel)} metrics)"
    n05, n10 = int((sel["mark"] == "**").sum()), int((sel["mark"] == "*").sum())
    return f"{n05} ** · {n10} * of {tested}"


def _pct_compact(r) -> Cell:
    text = f"{100 * r.mean_diff:+.1f}%" if math.isfinite(r.mean_diff) else "—"
    if r.n >= 3 and math.isfinite(r.p):
        p = fmt_p(r.p)
        text += f" (p{'' if p.startswith('<') else '='}{p}{r.mark})"
    return Cell(text, css={"**": "sig05", "*": "sig10"}.get(r.mark, ""))


def _weights_ratio(rows: pd.DataFrame, q: str) -> str:
    w = paired(select(rows, "throughput", ["weight_bytes"]))
    w = w[(w["quantizer"] == q) & (w["reference"] > 0)]
    return "—" if w.empty else f"×{finite_mean(w['value'] / w['reference']):.2f}"


def glance_section(rows: pd.DataFrame, stats: pd.DataFrame) -> Section:
    sec = Section("At a glance")
    quantizers = [q for q in quantizer_order(rows["quantizer"]) if q != FP32] if not rows.empty else []
    if not quantizers or stats.empty:
        sec.blocks.append(Para("No quantized rows with an fp32 reference in this run: nothing to compare."))
        return sec
    out = []
    for q in quantizers:
        rel = stats[(stats["quantizer"] == q) & (stats["metric"] == "relative_ece_change")]
        rel_cell = "—" if rel.empty else _pct_compact(next(rel.itertuples(index=False)))
        mcm = stats[(stats["quantizer"] == q) & (stats["benchmark"] == "ood") & (stats["metric"] == "mcm_auroc")]
        out.append({
            "Quantizer": q,
            "Models": str(int(rows.loc[rows["quantizer"] == q, "model"].nunique())),
            "Top-1 Δ": _one(stats, q, "zeroshot", "top1"),
            "Top-1 flips": _flips(stats, q),
            "KL (nats)": _plain_mean(stats, q, "mean_kl", 4),
            "Embedding cosine": _plain_mean(stats, q, "embedding_cosine", 4),
            "Image R@1 Δ": _one(stats, q, "retrieval", "image_retrieval_R@1"),
            "FACET tests marked": _marks(stats, q, "facet", FACET_SUMMARY),
            "FairFace tests marked": _marks(stats, q, "fairface", FAIRFACE_SUMMARY),
            "ECE relative change": rel_cell,
            "MCM AUROC Δ": fmt(finite_mean(mcm["mean_diff"])) if not mcm.empty else "—",
            "Weights": _weights_ratio(rows, q),
        })
    table = pd.DataFrame(out)
    table = table[[c for c in table.columns if (table[c].astype(str) != "—").any()]]
    sec.blocks.append(Table(table,
                            "Mean Δ (quantized − fp32) across models, with the paired t-test p (* p < .10, ** p < .05, "
                            "unadjusted). \"Tests marked\": how many of the section's paired tests reached each mark "
                            "(expect about 10% * or better by chance alone). Top-1 flips: share of images whose zero-shot "
                            "prediction differs from fp32's (right→wrong, wrong→right), so a Top-1 Δ near 0 with many "
                            "flips is visible; KL: mean KL(fp32 ‖ quantized) of the predictive distributions; "
                            "embedding cosine: mean cosine of each image's two embeddings (means over the models). "
                            "MCM AUROC Δ: mean over the OOD sets. "
                            "Details and CIs in the sections below."))
    return sec


def _ratio_cell(value: float, ref: float, scale: float) -> str:
    if not math.isfinite(value):
        return "—"
    text = f"{value * scale:,.1f}" if value * scale >= 10 else f"{value * scale:.3g}"
    if math.isfinite(ref) and ref > 0:
        text += f" (×{value / ref:.2f})"
    return text


def cost_section(rows: pd.DataFrame, cells=None) -> Section:
    sec = Section("Cost (throughput, memory)")
    data = select(rows, "throughput")
    if data.empty:
        sec.blocks.append(empty("throughput", cells, "rows"))
        return sec
    keys = ["model", "quantizer"]
    val = data.groupby(keys + ["metric"])["value"].mean()
    ref = data.groupby(keys + ["metric"])["reference"].mean()

    def delta(bench, metric):
        sel = select(rows, bench, [metric])
        sel = sel[sel["subgroup"] == ""]
        if sel.empty:
            return pd.Series(dtype=float)
        counts = sel.groupby("dataset")["model"].nunique()
        main = sorted(counts.index, key=lambda d: (-counts[d], d))[0]
        return sel[sel["dataset"] == main].groupby(keys)["delta"].mean()

    extra = {"Top-1 Δ": delta("zeroshot", "top1"), "Image R@1 Δ": delta("retrieval", "image_retrieval_R@1"),
             "ECE Δ": delta("calibration", "ece")}
    order = {q: i for i, q in enumerate(quantizer_order(data["quantizer"]))}
    pairs = sorted({(m, q) for m, q in zip(data["model"], data["quantizer"], strict=True)},
                   key=lambda mq: (mq[0], order[mq[1]]))
    out = []
    for model, q in pairs:
        row = {"Model": short_model(model), "Quantizer": q}
        for metric, label, scale in _COST:
            v = val.get((model, q, metric), np.nan)
            r = ref.get((model, q, metric), np.nan)
            row[label] = _ratio_cell(v, r if q != FP32 else np.nan, scale)
        for label, series in extra.items():
            d = series.get((model, q), np.nan)
            row[label] = "—" if q == FP32 or not math.isfinite(d) else fmt(d)
        out.append(row)
    table = pd.DataFrame(out)
    table = table[[c for c in table.columns if c in ("Model", "Quantizer") or (table[c] != "—").any()]]
    device = sorted({str(e.get("device")) for e in data["extra"] if isinstance(e, dict) and e.get("device")})
    sec.blocks.append(Table(table, "Per model and quantizer: value (× the fp32 value of the same model) and the "
                                   "accuracy / calibration Δ it comes with"
                                   + (f"; measured on {', '.join(device)}" if device else "") + ".",
                            group_col="Model"))
    return sec
