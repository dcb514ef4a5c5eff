"""Figures of the study section (Bouguerra et al., "Less Precise Can Be More Reliable"; :mod:`.sections_study`).

* :func:`bits_figure` (their Fig. 3): in-distribution zero-shot top-1 against the weight bit-width (8, 6, 4)
  per method of the simulated weight × activation families, the mean over the models with its 95% CI as a
  band, fp32's mean as a horizontal line.
* :func:`ece_by_source_figure` (their Fig. 5): the relative ECE change of each (model, quantizer), grouped by
  the model's pre-training source: a violin per source where it has at least 5 distinct values, else a box,
  and every point coloured by its quantizer (the report's colours); × marks an accuracy drop under 2 points.
  The study's W × A quantizers and the others are two panels, since the paper's claim is about the first.
* :func:`dichotomy_figure` (their Fig. 1): accuracy change against relative ECE change, one point per
  (model, quantizer), coloured by training source.

Each returns None when the run has no quantizer of the study's families (the section is absent then).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from qclip.report.data import quantizer_order, short_model
from qclip.report.plots import _PALETTE, _colors, mean_ci, new_figure
from qclip.report.study import (
    accuracy_vs_ece,
    parse_quantizer,
    relative_ece,
    simulated_quantizers,
    source_color,
    source_order,
    top1_by_bits,
)

__all__ = ["bits_figure", "dichotomy_figure", "ece_by_source_figure"]

_ACC_TOLERANCE = 0.02  # the paper's "less than 2% accuracy degradation" crosses
_MIN_VIOLIN = 5
_BITS = (8, 6, 4)


def _style(ax) -> None:
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)


def _series_order(series) -> list[str]:
    """rtn, gptq first, then the other methods alphabetically (variants after their base)."""
    first = {"rtn": 0, "gptq": 1}
    return sorted(set(series), key=lambda s: (first.get(s.split(" ")[0], 2), s))


def bits_figure(rows: pd.DataFrame, colors: dict | None = None) -> Figure | None:
    if not simulated_quantizers(rows):
        return None
    data, fp32, ds = top1_by_bits(rows)
    if data.empty:
        return None
    series = _series_order(data["series"])
    fig = new_figure(6.4, 4.2)
    ax = fig.subplots()
    bits = sorted(set(data["weight_bits"]) | set(_BITS), reverse=True)
    for i, s in enumerate(series):
        color = _PALETTE[i % len(_PALETTE)]
        part = data[data["series"] == s]
        xs, means, lows, highs = [], [], [], []
        for b in sorted(part["weight_bits"].unique(), reverse=True):
            vals = part.loc[part["weight_bits"] == b].groupby("model")["value"].mean().to_numpy(dtype=float)
            m, lo, hi, _ = mean_ci(vals)
            xs.append(b)
            means.append(m)
            lows.append(lo)
            highs.append(hi)
        xs, means, lows, highs = (np.array(v, dtype=float) for v in (xs, means, lows, highs))
        n = int(part["model"].nunique())
        ax.plot(xs, means, marker="o", ms=5, lw=1.8, color=color, label=f"{s} (n={n})", zorder=3)
        ok = np.isfinite(lows) & np.isfinite(highs)
        if ok.sum() >= 2:
            ax.fill_between(xs[ok], lows[ok], highs[ok], color=color, alpha=0.15, lw=0, zorder=2)
        elif ok.any():
            ax.errorbar(xs[ok], means[ok], yerr=[means[ok] - lows[ok], highs[ok] - means[ok]], fmt="none",
                        ecolor=color, elinewidth=1.2, capsize=3, zorder=2)
    if not fp32.empty:
        ax.axhline(float(fp32.mean()), color="#222222", lw=1.2, ls="--", label=f"fp32 (n={fp32.size})", zorder=1)
    ax.set_xticks(bits, [f"W{b}" for b in bits])
    ax.set_xlim(max(bits) + 0.5, min(bits) - 0.5)  # precision decreases to the right, as in the paper
    ax.set_xlabel("weight bit-width", fontsize=8)
    ax.set_ylabel("zero-shot top-1 (mean over models)", fontsize=8)
    ax.set_title(f"ID accuracy vs weight bit-width, `{ds}`: mean ± 95% CI", fontsize=9)
    _style(ax)
    ax.legend(fontsize=7, frameon=False, loc="best")
    return fig


def _panels(data: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    study = data["quantizer"].map(lambda q: parse_quantizer(q) is not None)
    panels = [("Weight × activation (simulated, QAT)", data[study]), ("Other quantizers", data[~study])]
    return [(t, p) for t, p in panels if not p.empty]


def ece_by_source_figure(rows: pd.DataFrame, colors: dict | None = None) -> Figure | None:
    if not simulated_quantizers(rows):
        return None
    data, ds = relative_ece(rows)
    if data.empty:
        return None
    sources = source_order(data["source"])
    quantizers = [q for q in quantizer_order(data["quantizer"])]
    colors = _colors(colors, quantizers)
    panels = _panels(data)
    fig = new_figure(1.6 + max(2.8, 1.3 + 1.1 * len(sources)) * len(panels), 4.6)
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    rng = np.random.default_rng(0)
    for ax, (title, part) in zip(axes, panels, strict=True):
        for i, src in enumerate(sources):
            pts = part[part["source"] == src]
            y = 100 * pts["rel"].to_numpy(dtype=float)
            if y.size == 0:
                continue
            if np.unique(y).size >= _MIN_VIOLIN:
                body = ax.violinplot([y], positions=[i], showextrema=False, widths=0.8)["bodies"][0]
                body.set_facecolor(source_color(src))
                body.set_alpha(0.22)
            else:
                ax.boxplot([y], positions=[i], widths=0.45, showfliers=False, patch_artist=False,
                           medianprops={"color": source_color(src)}, boxprops={"color": "0.55"},
                           whiskerprops={"color": "0.55"}, capprops={"color": "0.55"})
            x = i + rng.uniform(-0.18, 0.18, y.size)
            ax.scatter(x, y, s=26, c=[colors[q] for q in pts["quantizer"]], zorder=3, lw=0)
            small = (pts["acc_delta"] > -_ACC_TOLERANCE).to_numpy()
            ax.scatter(x[small], y[small], s=10, marker="x", color="black", lw=0.7, zorder=4)
            ax.scatter([i], [np.mean(y)], s=110, marker="_", color=source_color(src), lw=2.5, zorder=5)
        ax.axhline(0, color="0.35", lw=0.8)
        ax.set_xticks(range(len(sources)), sources, fontsize=8)
        ax.set_xlim(-0.6, len(sources) - 0.4)
        ax.set_title(f"{title}\n{part['quantizer'].nunique()} quantizers × {part['model'].nunique()} models",
                     fontsize=8)
        _style(ax)
        ax.grid(axis="x", visible=False)
    axes[0].set_ylabel("relative ECE change (%)  ↓ better", fontsize=8)
    handles = [Line2D([], [], marker="o", ls="", color=colors[q], markersize=5, label=q) for q in quantizers]
    handles += [Line2D([], [], marker="x", ls="", color="black", label="accuracy drop < 2 pts"),
                Line2D([], [], marker="_", ls="", color="0.3", markersize=12, mew=2.5, label="mean of the source")]
    fig.legend(handles=handles, loc="outside right center", fontsize=7, frameon=False)
    fig.suptitle(f"Relative ECE change by pre-training source, `{ds}`", fontsize=9)
    return fig


def dichotomy_figure(rows: pd.DataFrame, colors: dict | None = None) -> Figure | None:
    if not simulated_quantizers(rows):
        return None
    data, ds = accuracy_vs_ece(rows)
    if data.empty:
        return None
    sources = source_order(data["source"])
    fig = new_figure(7.2, 5.2)
    ax = fig.subplots()
    study = data["quantizer"].map(lambda q: parse_quantizer(q) is not None).to_numpy()
    for src in sources:
        part = data["source"].to_numpy() == src
        x, y = 100 * data["acc_delta"].to_numpy(dtype=float), 100 * data["rel"].to_numpy(dtype=float)
        for mask, marker in ((part & study, "o"), (part & ~study, "s")):
            if mask.any():
                ax.scatter(x[mask], y[mask], s=30, marker=marker, color=source_color(src), alpha=0.85, lw=0,
                           zorder=3)
        ax.scatter([x[part].mean()], [y[part].mean()], s=140, marker="P", color=source_color(src),
                   edgecolor="black", lw=0.8, zorder=5)
    ax.axhline(0, color="0.35", lw=0.8)
    ax.axvline(0, color="0.35", lw=0.8)
    for (tx, ty, ha, va, text) in ((0.98, 0.02, "right", "bottom", "more accurate,\nbetter calibrated"),
                                   (0.02, 0.98, "left", "top", "less accurate,\nworse calibrated")):
        ax.text(tx, ty, text, transform=ax.transAxes, ha=ha, va=va, fontsize=7, color="0.4")
    ax.set_xlabel("accuracy change, quantized − fp32 (points)", fontsize=8)
    ax.set_ylabel("relative ECE change (%)  ↓ better", fontsize=8)
    ax.set_title(f"Accuracy vs calibration change per model × quantizer, `{ds}`", fontsize=9)
    _style(ax)
    counts = data.groupby("source")["model"].unique()
    handles = [Line2D([], [], marker="o", ls="", color=source_color(s), markersize=6,
                      label=f"{s}: " + ", ".join(short_model(m) for m in sorted(counts[s]))) for s in sources]
    handles += [Line2D([], [], marker="o", ls="", color="0.5", label="W × A (simulated, QAT)"),
                Line2D([], [], marker="s", ls="", color="0.5", label="other quantizers"),
                Line2D([], [], marker="P", ls="", color="0.5", markeredgecolor="black", markersize=8,
                       label="mean of the source")]
    fig.legend(handles=handles, fontsize=7, frameon=False, loc="outside lower center", ncols=3)
    return fig
