"""Figures of the spectral and robustness sections.

* :func:`spectral_figure`: per model, the noise-to-signal ratio per principal rank of
  each quantizer over the fp32 energy spectrum (log scale), bands marked.
* :func:`robustness_figure`: top-1 against corruption severity per corruption, fp32
  and each quantizer, mean over the models with their range shaded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator

from qclip.report.data import FP32, extra_list, paired, quantizer_order, select, short_model
from qclip.report.plots import _colors, legend, mean_ci, new_figure
from qclip.report.sections_robustness import parse_corruption

__all__ = ["robustness_figure", "spectral_figure"]

_MAX_MODELS = 6
_TINY = 1e-12


def _bands(extra) -> list[tuple[float, float]]:
    bands = extra.get("bands") if isinstance(extra, dict) else None
    out = []
    for b in bands or []:
        try:
            out.append((float(b[0]), float(b[1])))
        except (TypeError, ValueError, IndexError):
            continue
    return out


def spectral_figure(rows: pd.DataFrame, colors: dict | None = None) -> Figure | None:
    data = paired(select(rows, "spectral", ["nsr_total"]))
    spectra = {}
    for r in data.itertuples(index=False):
        energy = extra_list(r.extra, "energy")
        nsr = extra_list(r.extra, "nsr_per_rank")
        if energy is None or nsr is None or not energy.size or energy.size != nsr.size:
            continue
        spectra[(r.model, r.quantizer)] = (energy, nsr, _bands(r.extra))
    if not spectra:
        return None
    models = sorted({m for m, _ in spectra})[:_MAX_MODELS]
    quantizers = [q for q in quantizer_order({q for _, q in spectra}) if q != FP32]
    colors = _colors(colors, quantizers)
    ncols = min(3, len(models))
    nrows = -(-len(models) // ncols)
    fig = new_figure(0.6 + 3.6 * ncols, 0.9 + 2.9 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for idx, ax in enumerate(axes.flat):
        if idx >= len(models):
            ax.set_visible(False)
            continue
        model = models[idx]
        energy_drawn = False
        for q in quantizers:
            if (model, q) not in spectra:
                continue
            energy, nsr, bands = spectra[(model, q)]
            ok = np.isfinite(energy) & (energy > _TINY * np.nanmax(energy)) & np.isfinite(nsr) & (nsr > 0)
            rank = np.arange(1, energy.size + 1)
            ax.plot(rank[ok], nsr[ok], color=colors[q], lw=1.4, marker="o", ms=2.5)
            if not energy_drawn:
                good = np.isfinite(energy) & (energy > _TINY * np.nanmax(energy))
                ax.plot(rank[good], energy[good], color="0.45", lw=1.2, ls="--")
                for i, (lo, hi) in enumerate(bands):
                    if i:
                        ax.axvline(np.ceil(lo * energy.size) + 0.5, color="0.6", lw=0.8, ls=":")
                    mid = (np.ceil(lo * energy.size) + np.ceil(hi * energy.size)) / 2 + 0.5
                    ax.text(mid, 1.0, f"{100 * lo:.0f}–{100 * hi:.0f}%", transform=ax.get_xaxis_transform(),
                            ha="center", va="bottom", fontsize=6.5, color="0.45")
                energy_drawn = True
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(short_model(model), fontsize=9, pad=12)
        ax.set_xlabel("principal rank of the fp32 features", fontsize=8)
        ax.grid(alpha=0.25, which="major")
        ax.tick_params(labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
        if idx % ncols == 0:
            ax.set_ylabel("NSR per rank  /  fp32 energy share", fontsize=8)
    legend(fig, [*quantizers, "fp32 energy share"], {**colors, "fp32 energy share": "0.45"},
           "Noise-to-signal ratio per rank (solid) over the fp32 energy spectrum (dashed)", marker=None,
           styles={"fp32 energy share": "--"})
    return fig


def _curves(rows: pd.DataFrame) -> pd.DataFrame:
    """(dataset, corruption, severity, quantizer, model, top1), fp32 from the references; severity 0
    from the zero-shot top-1 on the same dataset."""
    top1 = select(rows, "robustness", ["top1"])
    parsed = [parse_corruption(s) for s in top1["subgroup"]]
    top1 = top1[[p is not None for p in parsed]]
    if top1.empty:
        return pd.DataFrame()
    top1 = top1.assign(corruption=[parse_corruption(s)[0] for s in top1["subgroup"]],
                       severity=[parse_corruption(s)[1] for s in top1["subgroup"]])
    q = paired(top1)
    ref = q.groupby(["dataset", "corruption", "severity", "model"], as_index=False)["reference"].mean()
    frames = [q[["dataset", "corruption", "severity", "quantizer", "model", "value"]],
              ref.rename(columns={"reference": "value"}).assign(quantizer=FP32)]
    clean = select(rows, "zeroshot", ["top1"])
    clean = clean[clean["dataset"].isin(set(top1["dataset"])) & (clean["subgroup"] == "")]
    for corruption in top1["corruption"].unique():
        frames.append(clean[["dataset", "quantizer", "model", "value"]].assign(corruption=corruption, severity=0))
    return pd.concat(frames, ignore_index=True)


def robustness_figure(rows: pd.DataFrame, colors: dict | None = None) -> Figure | None:
    curves = _curves(rows)
    if curves.empty:
        return None
    panels = sorted({(d, c) for d, c in zip(curves["dataset"], curves["corruption"], strict=True)})[:6]
    quantizers = quantizer_order(curves["quantizer"])
    colors = _colors(colors, quantizers)
    several = len({d for d, _ in panels}) > 1
    fig = new_figure(0.6 + 3.4 * len(panels), 5.4)
    axes = fig.subplots(2, len(panels), squeeze=False, sharex="col", height_ratios=[3, 2])
    for col, (dataset, corruption) in enumerate(panels):
        top, bottom = axes[0, col], axes[1, col]
        part = curves[(curves["dataset"] == dataset) & (curves["corruption"] == corruption)]
        fp = part[part["quantizer"] == FP32].groupby(["severity", "model"])["value"].mean()
        x_all = sorted(part["severity"].unique())
        for j, q in enumerate(quantizers):
            qp = part[part["quantizer"] == q]
            if qp.empty:
                continue
            mean = qp.groupby("severity")["value"].mean()
            top.plot(mean.index, mean.to_numpy(), color=colors[q], marker="o", ms=4, lw=2.0 if q == FP32 else 1.4,
                     ls="-" if q == FP32 else "--", zorder=3 if q == FP32 else 2)
            if q == FP32:
                continue
            d = (qp.groupby(["severity", "model"])["value"].mean() - fp).dropna()
            xs, ms, los, his = [], [], [], []
            for sev, dd in d.groupby(level="severity"):
                mean, lo, hi, _ = mean_ci(dd.to_numpy())
                xs.append(sev + (j - len(quantizers) / 2) * 0.06)
                ms.append(mean)
                los.append(mean - lo if np.isfinite(lo) else 0.0)
                his.append(hi - mean if np.isfinite(hi) else 0.0)
            bottom.errorbar(xs, ms, yerr=[los, his], color=colors[q], marker="D", ms=4, lw=1.2, capsize=2)
        bottom.axhline(0, color="0.35", lw=0.8)
        top.set_title(corruption.replace("_", " ") + (f" ({dataset})" if several else ""), fontsize=9)
        bottom.set_xlabel("severity (0 = clean)", fontsize=8)
        bottom.set_xticks(x_all)
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            ax.spines[["top", "right"]].set_visible(False)
        if col == 0:
            top.set_ylabel("top-1 (mean over models)", fontsize=8)
            bottom.set_ylabel("Δ top-1 vs fp32\n(mean, 95% CI)", fontsize=8)
    legend(fig, quantizers, colors, "Accuracy under corruption", marker=None,
           styles={q: "--" for q in quantizers if q != FP32})
    return fig
