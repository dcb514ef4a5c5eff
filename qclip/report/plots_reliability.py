"""Figures of the calibration and OOD sections.

* :func:`calibration_figure`: relative ECE change per model × quantizer (violin + strip,
  as Fig. 5 of Bouguerra et al.; × marks models whose accuracy fell by less than 2
  points) and, beside it, the change against the fp32 model's over-confidence.
* :func:`reliability_figure`: reliability diagrams of fp32 and each quantizer for up to
  four models, from the ``reliability`` lists the calibration cells store in ``extra``.
* :func:`ood_figure`: ΔAUROC and ΔFPR95 per score (forest plot).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from qclip.report.data import FP32, extra_list, paired, quantizer_order, select, short_model
from qclip.report.plots import _colors, forest_figure, legend, new_figure
from qclip.report.sections_reliability import OOD_SCORES, split_ood

__all__ = ["calibration_figure", "ood_figure", "reliability_figure"]

_MAX_DIAGRAMS = 4
_ACC_TOLERANCE = 0.02


def _relative_ece(rows: pd.DataFrame) -> pd.DataFrame:
    """(model, quantizer, rel, acc_delta, oc_ref) per quantized model."""
    rel = paired(select(rows, "calibration", ["relative_ece_change"]))
    rel = rel.groupby(["model", "quantizer"])["value"].mean().rename("rel")
    if rel.empty:  # older runs: derive it from the ECE rows
        e = paired(select(rows, "calibration", ["ece"]))
        e = e[e["reference"] > 0]
        rel = (e["value"] / e["reference"] - 1).groupby([e["model"], e["quantizer"]]).mean().rename("rel")
    acc = paired(select(rows, "calibration", ["accuracy"])).groupby(["model", "quantizer"])["delta"].mean()
    oc = paired(select(rows, "calibration", ["overconfidence"])).groupby(["model", "quantizer"])["reference"].mean()
    out = pd.concat([rel, acc.rename("acc_delta"), oc.rename("oc_ref")], axis=1).reset_index()
    return out[np.isfinite(out["rel"].to_numpy(dtype=float))]


def calibration_figure(rows: pd.DataFrame, colors: dict | None = None) -> Figure | None:
    data = _relative_ece(rows)
    if data.empty:
        return None
    quantizers = [q for q in quantizer_order(data["quantizer"]) if q != FP32]
    colors = _colors(colors, quantizers)
    has_oc = data["oc_ref"].notna().any()
    fig = new_figure(4.0 + 1.0 * len(quantizers) + (4.2 if has_oc else 0), 4.0)
    axes = fig.subplots(1, 2 if has_oc else 1, squeeze=False, width_ratios=[1.0 + 0.35 * len(quantizers), 1.6]
                        if has_oc else None)[0]
    ax = axes[0]
    rng = np.random.default_rng(0)
    for i, q in enumerate(quantizers):
        part = data[data["quantizer"] == q]
        y = 100 * part["rel"].to_numpy(dtype=float)
        if np.unique(y).size >= 3:
            body = ax.violinplot([y], positions=[i], showextrema=False, widths=0.75)["bodies"][0]
            body.set_facecolor(colors[q])
            body.set_alpha(0.25)
        x = i + rng.uniform(-0.12, 0.12, y.size)
        small = (part["acc_delta"] > -_ACC_TOLERANCE).to_numpy()
        ax.scatter(x, y, s=34, color=colors[q], zorder=3)
        ax.scatter(x[small], y[small], s=20, marker="x", color="black", lw=1.1, zorder=4)
        ax.scatter([i], [np.mean(y)], s=90, marker="_", color=colors[q], lw=2.5, zorder=5)
    ax.axhline(0, color="0.35", lw=0.8)
    ax.set_xticks(range(len(quantizers)), quantizers, fontsize=8)
    ax.set_xlim(-0.6, len(quantizers) - 0.4)
    ax.set_ylabel("relative ECE change (%)  ↓ better", fontsize=8)
    ax.set_title("Relative ECE change (ECE_q − ECE_fp32) / ECE_fp32", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    handles = [Line2D([], [], marker="x", ls="", color="black", label="accuracy drop < 2 pts"),
               Line2D([], [], marker="_", ls="", color="0.3", markersize=12, mew=2.5, label="mean")]
    ax.legend(handles=handles, fontsize=7, loc="best", frameon=False)
    if has_oc:
        ax = axes[1]
        for q in quantizers:
            part = data[data["quantizer"] == q]
            ax.scatter(part["oc_ref"], 100 * part["rel"], s=24, color=colors[q], label=q, zorder=3)
        ax.axhline(0, color="0.35", lw=0.8)
        ax.axvline(0, color="0.35", lw=0.8, ls=":")
        ax.set_xlabel("fp32 over-confidence (mean conf − accuracy)", fontsize=8)
        ax.set_title("Change vs the fp32 model's confidence", fontsize=9)
        ax.text(0.02, 0.98, "under-confident\nat fp32", transform=ax.transAxes, va="top", fontsize=7, color="0.4")
        ax.text(0.98, 0.98, "over-confident\nat fp32", transform=ax.transAxes, va="top", ha="right", fontsize=7,
                color="0.4")
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    for a in axes:
        a.tick_params(labelsize=8)
    return fig


def _diagrams(rows: pd.DataFrame) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """(model, quantizer) → reliability columns, from the ``ece`` rows' extra."""
    out = {}
    for r in select(rows, "calibration", ["ece"]).itertuples(index=False):
        cols = {k: extra_list(r.extra, "reliability", k) for k in ("conf", "acc", "count")}
        if any(v is None for v in cols.values()) or not cols["count"].size:
            continue
        out[(r.model, r.quantizer)] = cols | {"ece": float(r.value)}
    return out


def _pick_models(rows: pd.DataFrame, models: list[str]) -> list[str]:
    if len(models) <= _MAX_DIAGRAMS:
        return models
    rel = _relative_ece(rows)
    score = rel.assign(a=rel["rel"].abs()).groupby("model")["a"].max()
    ranked = sorted(models, key=lambda m: -float(score.get(m, 0.0)))
    return sorted(ranked[:_MAX_DIAGRAMS])


def reliability_figure(rows: pd.DataFrame, colors: dict | None = None) -> Figure | None:
    diagrams = _diagrams(rows)
    if not diagrams:
        return None
    models = _pick_models(rows, sorted({m for m, _ in diagrams}))
    quantizers = quantizer_order({q for _, q in diagrams})
    colors = _colors(colors, quantizers)
    fig = new_figure(0.8 + 3.3 * len(models), 4.6)
    axes = fig.subplots(2, len(models), squeeze=False, height_ratios=[3, 1], sharex=True)
    for col, model in enumerate(models):
        top, bottom = axes[0, col], axes[1, col]
        top.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--", zorder=1)
        for q in quantizers:
            d = diagrams.get((model, q))
            if d is None:
                continue
            total = max(np.nansum(d["count"]), 1.0)
            share = d["count"] / total
            ok = np.isfinite(d["conf"]) & np.isfinite(d["acc"]) & (d["count"] > 0)
            lw = 1.8 if q == FP32 else 1.2
            top.plot(d["conf"][ok], d["acc"][ok], color=colors[q], lw=lw, alpha=0.9, zorder=3 if q == FP32 else 2)
            top.scatter(d["conf"][ok], d["acc"][ok], s=8 + 220 * share[ok], color=colors[q], alpha=0.7, lw=0,
                        zorder=3)
            n_bins = share.size - 1 if share.size > 1 else share.size
            centers = (np.arange(n_bins) + 0.5) / n_bins
            bottom.step(centers, share[:n_bins], where="mid", color=colors[q], lw=1.0, alpha=0.9)
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        eces = [f"{q} {diagrams[(model, q)]['ece']:.3f}" for q in quantizers if (model, q) in diagrams]
        lines = [" · ".join(eces[i : i + 2]) for i in range(0, len(eces), 2)]
        top.set_title(short_model(model) + "\nECE: " + "\n".join(lines), fontsize=8)
        top.grid(alpha=0.25)
        bottom.set_xlabel("confidence", fontsize=8)
        bottom.grid(alpha=0.25)
        for a in (top, bottom):
            a.tick_params(labelsize=7)
            a.spines[["top", "right"]].set_visible(False)
        if col == 0:
            top.set_ylabel("accuracy", fontsize=8)
            bottom.set_ylabel("share", fontsize=8)
    shown = len({m for m, _ in diagrams})
    note = "" if shown <= len(models) else f" ({len(models)} of {shown} models: the largest |relative ECE change|)"
    legend(fig, quantizers, colors, "Reliability diagrams: fp32 vs quantized" + note, marker="o")
    return fig


def ood_figure(rows: pd.DataFrame, colors: dict | None = None) -> Figure | None:
    data = paired(select(rows, "ood"))
    if data.empty:
        return None
    parts = [split_ood(m) for m in data["metric"]]
    data = data.assign(score=[p[0] for p in parts], kind=[p[1] for p in parts])
    data = data[data["kind"].isin(["auroc", "fpr95"])]
    if data.empty:
        return None
    per_model = data.groupby(["kind", "score", "quantizer", "model"], as_index=False)["delta"].mean()
    per_model = per_model.rename(columns={"kind": "panel", "score": "item"})
    items = [s for s in OOD_SCORES if s in set(per_model["item"])]
    items += sorted(set(per_model["item"]) - set(items))
    sets = data["subgroup"].nunique()
    return forest_figure(
        per_model, ["auroc", "fpr95"], items, colors,
        title="OOD detection: Δ per model" + (f" (mean over {sets} OOD sets)" if sets > 1 else "")
        + ", mean ± 95% CI",
        panel_titles={"auroc": "ΔAUROC  (> 0 better)", "fpr95": "ΔFPR95  (< 0 better)"},
        item_labels=OOD_SCORES, ncols=2,
    )
