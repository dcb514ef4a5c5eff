"""The reliability sections in the manner of Bouguerra et al., "Less Precise Can Be More Reliable":
calibration (relative ECE change, reliability diagrams, temperature scaling, the direction of the
change of confidence) and OOD detection (AUROC / FPR95 per score and OOD set)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from qclip.report.blocks import Cell, Details, Heading, Para, Section, Table
from qclip.report.common import SIG_CAPTION, empty, figure, n_models_note, open_section
from qclip.report.data import finite_mean, paired, quantizer_order, short_model, stats_lookup
from qclip.report.tables import change_cell, pct_sig_cell, sig_cell, stats_table

__all__ = ["CAL_LABELS", "OOD_SCORES", "calibration_section", "ood_section", "split_ood"]

CAL_LABELS = {
    "ece": "ECE",
    "adaptive_ece": "Adaptive ECE",
    "mce": "MCE",
    "rms_ce": "RMS calibration error",
    "nll": "NLL",
    "brier": "Brier",
    "ece_heldout": "ECE (held-out half)",
    "ece_temp_scaled": "ECE after temperature scaling",
    "overconfidence": "Over-confidence (conf − acc)",
    "mean_confidence": "Mean confidence",
    "accuracy": "Accuracy",
    "relative_ece_change": "Relative ECE change",
    "temperature": "Fitted temperature",
    "ece_logit_tuned": "ECE after logit-scale tuning",
    "logit_scale_tuned": "Tuned logit scale",
}
_CAL_STATS = ["ece", "adaptive_ece", "mce", "rms_ce", "nll", "brier", "ece_temp_scaled", "ece_logit_tuned",
              "overconfidence", "accuracy"]
OOD_SCORES = {"mcm": "MCM", "msp": "MSP", "max_logit": "max-logit", "energy": "energy"}
_OOD_METRICS = ("auroc", "fpr95", "aupr_in", "aupr_out")

_CAL_ABOUT = (
    "Top-label confidence = max softmax of the CLIP logits. ECE: 15 equal-width bins; relative ECE change = "
    "(ECE_q − ECE_fp32) / ECE_fp32, negative = better calibrated. Temperature scaling is fitted on one half of "
    "the set and scored on the other. Logit-scale tuning (Bouguerra et al.) fits the logit scale on the "
    "calibration image–caption pairs with the contrastive loss, everything else frozen. Over-confidence = mean "
    "confidence − accuracy (> 0 over-confident). "
    "Bouguerra et al. found quantization improves calibration of under-confident models and often degrades it "
    "for over-confident ones; the two 'at fp32: ECE improved' columns of the first table check that pattern here."
)
_OOD_ABOUT = (
    "**Convention: ID is the positive class** (MCM's convention). AUROC is symmetric in that choice; "
    "FPR95 here is the share of OOD samples scored at or above the threshold that keeps 95% of ID samples, "
    "and AUPR-In / AUPR-Out swap names. OpenOOD makes OOD positive, so its FPR@95TPR and AUPR columns are "
    "not directly comparable. Higher AUROC and lower FPR95 are better: ΔAUROC > 0 and ΔFPR95 < 0 mean the "
    "quantized model separates ID from OOD better."
)


def _wide(data: pd.DataFrame) -> pd.DataFrame:
    """Quantized rows → one row per (dataset, quantizer, model) with ``<metric>`` (value) and
    ``<metric>_ref`` (fp32) columns."""
    q = paired(data)
    val = q.pivot_table(index=["dataset", "quantizer", "model"], columns="metric", values="value", aggfunc="mean")
    ref = q.pivot_table(index=["dataset", "quantizer", "model"], columns="metric", values="reference",
                        aggfunc="mean").add_suffix("_ref")
    return val.join(ref).reset_index()


def _count(mask) -> int:
    return int(np.sum(mask))


def _direction_cells(part: pd.DataFrame) -> tuple[str, str, str]:
    """Confidence direction counts and the paper's under-/over-confident pattern, for one quantizer."""
    if "overconfidence" not in part or "ece" not in part:
        return "—", "—", "—"
    d_oc = part["overconfidence"] - part["overconfidence_ref"]
    d_ece = part["ece"] - part["ece_ref"]
    toward = f"{_count(d_oc > 0)} over / {_count(d_oc < 0)} under"
    under = part["overconfidence_ref"] < 0
    over = part["overconfidence_ref"] > 0
    u = f"{_count(under & (d_ece < 0))} of {_count(under)}" if under.any() else "no such model"
    o = f"{_count(over & (d_ece < 0))} of {_count(over)}" if over.any() else "no such model"
    return toward, u, o


def _key_table(wide: pd.DataFrame, look: dict, dataset: str) -> pd.DataFrame:
    out = []
    for q in quantizer_order(wide["quantizer"]):
        part = wide[wide["quantizer"] == q]
        if part.empty or "ece" not in part:
            continue
        rel = look.get((q, "calibration", dataset, "relative_ece_change", ""))
        toward, under, over = _direction_cells(part)
        ts = ("ece_temp_scaled" in part) and change_cell(finite_mean(part["ece_temp_scaled_ref"]),
                                                         finite_mean(part["ece_temp_scaled"]), relative=True)
        lt = ("ece_logit_tuned" in part) and change_cell(finite_mean(part["ece_logit_tuned_ref"]),
                                                         finite_mean(part["ece_logit_tuned"]), relative=True)
        acc = look.get((q, "calibration", dataset, "accuracy", ""))
        out.append({
            "Quantizer": q,
            "n": int(part["ece"].notna().sum()),
            "ECE fp32 → quantized": change_cell(finite_mean(part["ece_ref"]), finite_mean(part["ece"]), relative=True),
            "Relative ECE change": pct_sig_cell(rel) if rel is not None else "—",
            "ECE after temp. scaling": ts or "—",
            "ECE after logit-scale tuning": lt or "—",
            "Confidence moved toward": toward,
            "Under-confident at fp32: ECE improved": under,
            "Over-confident at fp32: ECE improved": over,
            "Accuracy Δ": sig_cell(acc) if acc is not None else "—",
        })
    return pd.DataFrame(out)


def _per_model_table(wide: pd.DataFrame) -> pd.DataFrame:
    def pair(r, m, rel=False):
        if m not in r or f"{m}_ref" not in r:
            return "—"
        return change_cell(r[f"{m}_ref"], r[m], relative=rel, digits=3)

    out = []
    order = {q: i for i, q in enumerate(quantizer_order(wide["quantizer"]))}
    for _, r in wide.assign(_o=wide["quantizer"].map(order)).sort_values(["model", "_o"]).iterrows():
        out.append({
            "Model": short_model(r["model"]),
            "Quantizer": r["quantizer"],
            "ECE": pair(r, "ece", rel=True),
            "ECE after temp. scaling": pair(r, "ece_temp_scaled", rel=True),
            "ECE after logit tuning": pair(r, "ece_logit_tuned", rel=True),
            "conf − acc": pair(r, "overconfidence"),
            "Temperature": pair(r, "temperature"),
            "Accuracy": pair(r, "accuracy"),
        })
    return pd.DataFrame(out)


def calibration_section(rows: pd.DataFrame, stats: pd.DataFrame, images: dict, cells=None) -> Section:
    sec, st, data = open_section("Calibration", "calibration", rows, stats, _CAL_ABOUT, cells)
    if st is None:
        return sec
    look = stats_lookup(st)
    wide = _wide(data)
    for dataset in sorted(st["dataset"].unique()):
        w = wide[wide["dataset"] == dataset]
        key = _key_table(w, look, dataset)
        if not key.empty:
            sec.blocks.append(Table(key, f"`calibration` on `{dataset}`. ECE columns: mean over the models, fp32 → "
                                         "quantized (change of the mean); relative ECE change: the mean of each "
                                         "model's own relative change. \"Confidence moved toward\": models whose "
                                         "conf − acc rose (over) or fell (under). The next two columns count the "
                                         "models whose ECE fell, among those under- / over-confident at fp32. "
                                         "Relative ECE change and accuracy Δ: " + SIG_CAPTION))
    sec.blocks += figure(images, "calibration_ece", "Relative ECE change per model and quantizer",
                         "Left: relative ECE change, one point per model (×: accuracy dropped by less than 2 points, "
                         "as the paper marks them); below 0 is better calibrated. Right: the same against the fp32 "
                         "model's over-confidence: the paper's pattern puts under-confident models (left) below 0.")
    sec.blocks += figure(images, "reliability", "Reliability diagrams, fp32 vs quantized",
                         "Accuracy against mean confidence per bin (dots sized by the bin's share of samples); the "
                         "diagonal is perfect calibration, below it over-confident. Bottom strip: share of samples "
                         "per confidence bin.")
    for dataset in sorted(st["dataset"].unique()):
        table = stats_table(st, "calibration", _CAL_STATS, dataset, labels=CAL_LABELS)
        if not table.empty:
            sec.blocks.append(Heading(f"Population statistics, `{dataset}`"))
            sec.blocks.append(Table(table, "Lower is better for every error (ECE … Brier); " + SIG_CAPTION,
                                    group_col="Quantizer"))
    if not wide.empty:
        sec.blocks.append(Details(f"Per model: ECE, temperature scaling, confidence ({wide['model'].nunique()} models)",
                                  [Table(_per_model_table(wide), "fp32 → quantized (relative change for ECE).",
                                         group_col="Model")]))
    return sec


def split_ood(metric: str) -> tuple[str, str]:
    """``max_logit_auroc`` → (``max_logit``, ``auroc``); unknown names → (metric, '')."""
    for m in _OOD_METRICS:
        if metric.endswith("_" + m):
            return metric[: -len(m) - 1], m
    return metric, ""


def _ood_table(st: pd.DataFrame, dataset: str, metrics: tuple[str, str], labels: tuple[str, str]) -> pd.DataFrame:
    sel = st[st["dataset"] == dataset]
    look = stats_lookup(sel)
    scores = [s for s in OOD_SCORES if any(split_ood(m)[0] == s for m in sel["metric"])]
    scores += sorted({split_ood(m)[0] for m in sel["metric"]} - set(scores) - {""})
    out = []
    for ood_set in sorted(sel["subgroup"].unique()):
        for score in scores:
            for q in quantizer_order(sel["quantizer"]):
                rs = [look.get((q, "ood", dataset, f"{score}_{m}", ood_set)) for m in metrics]
                if all(r is None for r in rs):
                    continue
                row = {"OOD set · score": f"{ood_set} · {OOD_SCORES.get(score, score)}", "Quantizer": q,
                       "n": max(int(r.n) for r in rs if r is not None)}
                for r, label in zip(rs, labels, strict=True):
                    row[f"{label} fp32"] = Cell("—") if r is None else Cell(f"{r.mean_ref:.4f}")
                    row[f"{label} quantized"] = Cell("—") if r is None else Cell(f"{r.mean_q:.4f}")
                    row[f"Δ{label}"] = Cell("—") if r is None else sig_cell(r)
                out.append(row)
    return pd.DataFrame(out)


def ood_section(rows: pd.DataFrame, stats: pd.DataFrame, images: dict, cells=None) -> Section:
    sec = Section("OOD detection")
    st = stats[stats["benchmark"] == "ood"] if not stats.empty else stats
    if st.empty:
        sec.blocks += [empty("ood", cells), Para("(OOD convention of this report: ID samples are the positive "
                                                  "class; OpenOOD makes OOD positive.)")]
        return sec
    sec.blocks.append(Para(_OOD_ABOUT))
    if (note := n_models_note(st)) is not None:
        sec.blocks.append(note)
    for dataset in sorted(st["dataset"].unique()):
        table = _ood_table(st, dataset, ("auroc", "fpr95"), ("AUROC", "FPR95"))
        if not table.empty:
            sec.blocks.append(Table(table, f"ID set `{dataset}`; fp32 and quantized are means over the models. "
                                    + SIG_CAPTION, group_col="OOD set · score"))
    sec.blocks += figure(images, "ood", "ΔAUROC and ΔFPR95 per score and quantizer",
                         "One dot per model (averaged over the OOD sets); diamonds and bars: mean and 95% CI.")
    for dataset in sorted(st["dataset"].unique()):
        table = _ood_table(st, dataset, ("aupr_in", "aupr_out"), ("AUPR-In", "AUPR-Out"))
        if not table.empty:
            sec.blocks.append(Details(f"AUPR-In / AUPR-Out, ID set `{dataset}`",
                                      [Table(table, SIG_CAPTION, group_col="OOD set · score")],
                                      [Para("AUPR-In / AUPR-Out per score and OOD set: see report.html or "
                                            "`stats.csv`.")]))
    return sec



