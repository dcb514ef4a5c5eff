"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no global state).

* :func:`accuracy_figure`: Figure-1 style (Slyman et al., "You Never Know"):
  grouped bars of zero-shot top-1 and retrieval R@1 per model, one bar per quantizer.
* :func:`delta_figure`: the distribution across models of each headline metric's
  Δ = quantized − fp32, every quantizer side by side; one panel per benchmark, since
  benchmarks have different units. Cost rows and per-class / per-value detail rows
  are left out (their sections show them).
* :func:`forest_figure`: the shared "Δ per model and mean ± 95% CI" plot of the
  fairness and OOD sections.

Every figure takes ``colors`` (quantizer → colour, :func:`quantizer_colors`), so a
quantizer keeps its colour across the whole report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from qclip.report.data import FP32, quantizer_order, short_model
from qclip.report.tables import ACCURACY_METRICS, metric_sort_key
from qclip.stats import mark, paired_test

__all__ = [
    "DETAIL_METRICS",
    "accuracy_figure",
    "delta_figure",
    "forest_figure",
    "legend",
    "mean_ci",
    "new_figure",
    "quantizer_colors",
    "save_png",
]

_MAX_PANELS = 6
_MAX_ITEMS = 36
_COST_BENCHMARKS = ("throughput",)
DETAIL_METRICS = r"disparity@\d+|skew@\d+|group_accuracy|temperature"
"""Metrics left out of the Δ overview: per-class / per-value details and unit-less scales."""
_FP32_COLOR = "#222222"
_PALETTE = ("#1f77b4", "#d95f02", "#2ca02c", "#9467bd", "#e7298a", "#8c564b", "#17becf", "#bcbd22",
            "#7f7f7f", "#e6ab02", "#e41a1c", "#1b9e77", "#000080", "#a6761d", "#66a61e", "#fb9a99")
"""16 distinct colours: the default run has 11 quantizers, and a repeated colour made two of them one
series in the legend (ao-int8dyn and w8a8 were both blue)."""


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def quantizer_colors(quantizers) -> dict[str, str]:
    """fp32 near-black, the others a fixed qualitative palette in sorted order."""
    out, i = {}, 0
    for q in quantizer_order(quantizers):
        if q == FP32:
            out[q] = _FP32_COLOR
        else:
            out[q] = _PALETTE[i % len(_PALETTE)]
            i += 1
    return out


def _colors(colors, quantizers) -> dict[str, str]:
    return colors if colors is not None and all(q in colors for q in quantizers) else quantizer_colors(quantizers)


def accuracy_figure(rows: pd.DataFrame, colors: dict | None = None) -> Figure | None:
    """Grouped bars per (benchmark, metric, dataset) panel; None when no accuracy rows exist."""
    panels = []
    for bench, metric in ACCURACY_METRICS:
        sel = rows[(rows["benchmark"] == bench) & (rows["metric"] == metric)]
        sel = sel[np.isfinite(sel["value"])]
        for dataset, part in sel.groupby("dataset", sort=True):
            panels.append((f"{bench} {metric}\n{dataset}", part))
    if not panels:
        return None
    panels = panels[:_MAX_PANELS]
    quantizers = quantizer_order(pd.concat([p for _, p in panels])["quantizer"])
    colors = _colors(colors, quantizers)
    fig = new_figure(max(4.5, 4.2 * len(panels)), 4.0)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    width = 0.8 / len(quantizers)
    for ax, (title, part) in zip(axes, panels, strict=True):
        table = part.pivot_table(index="model", columns="quantizer", values="value", aggfunc="mean")
        x = np.arange(len(table.index))
        for i, q in enumerate(quantizers):
            if q in table:
                ax.bar(x + (i - (len(quantizers) - 1) / 2) * width, table[q].to_numpy(), width, label=q,
                       color=colors[q])
        ax.set_xticks(x, [short_model(m) for m in table.index], rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("value")
        ax.grid(axis="y", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=min(len(quantizers), 6), fontsize=8)
    return fig


def _panel_items(part: pd.DataFrame) -> list[tuple[str, tuple]]:
    """(label, (metric, subgroup, dataset)) of one benchmark's headline metrics, at most _MAX_ITEMS."""
    several = part["dataset"].nunique() > 1
    keys = sorted(
        part.groupby(["metric", "subgroup", "dataset"]).groups,
        key=lambda k: (metric_sort_key(k[0]), k[1], k[2]),
    )
    return [
        (metric + (f" [{subgroup}]" if subgroup else "") + (f" ({dataset})" if several else ""), (metric, subgroup, dataset))
        for metric, subgroup, dataset in keys[:_MAX_ITEMS]
    ]


def delta_figure(rows: pd.DataFrame, colors: dict | None = None) -> Figure | None:
    """Δ across models of every headline metric, one panel per benchmark (units differ), every
    quantizer side by side: a dot per model, a diamond at the mean. None without quantized rows."""
    data = rows[(rows["quantizer"] != FP32) & ~rows["benchmark"].isin(_COST_BENCHMARKS)]
    data = data[np.isfinite(data["delta"]) & ~data["metric"].str.fullmatch(DETAIL_METRICS)]
    if data.empty:
        return None
    quantizers = quantizer_order(data["quantizer"])
    colors = _colors(colors, quantizers)
    groups = {k: g["delta"].to_numpy(dtype=float)
              for k, g in data.groupby(["benchmark", "metric", "subgroup", "dataset", "quantizer"])}
    panels = [(bench, _panel_items(part)) for bench, part in data.groupby("benchmark", sort=True)]
    per_item = 0.12 + 0.07 * len(quantizers)
    heights = [0.55 + per_item * len(items) for _, items in panels]
    columns = _balance(heights, 2 if len(panels) > 2 else 1)
    tallest = max(sum(heights[i] for i in col) for col in columns)
    fig = new_figure(6.2 * len(columns), 0.9 + tallest)
    subfigs = np.atleast_1d(fig.subfigures(1, len(columns), wspace=0.02))
    axes = [None] * len(panels)
    for sf, col in zip(subfigs, columns, strict=True):
        filler = max(tallest - sum(heights[i] for i in col), 1e-3)
        made = sf.subplots(len(col) + 1, 1, squeeze=False, height_ratios=[*(heights[i] for i in col), filler])[:, 0]
        made[-1].set_visible(False)
        for i, ax in zip(col, made[:-1], strict=True):
            axes[i] = ax
    rng = np.random.default_rng(0)
    step = 0.8 / len(quantizers)
    for ax, (bench, items) in zip(axes, panels, strict=True):
        for j, q in enumerate(quantizers):
            xs, ys, mx, my = [], [], [], []
            for i, (_, key) in enumerate(items):
                d = groups.get((bench, *key, q))
                if d is None:
                    continue
                y = i + (j - (len(quantizers) - 1) / 2) * step
                xs.append(d)
                ys.append(y + rng.uniform(-step / 4, step / 4, d.size))
                mx.append(d.mean())
                my.append(y)
            if mx:
                ax.scatter(np.concatenate(xs), np.concatenate(ys), s=8, color=colors[q], alpha=0.5, lw=0)
                ax.scatter(mx, my, s=22, marker="D", color=colors[q], edgecolor="white", lw=0.5, zorder=3)
        ax.axvline(0.0, color="0.4", lw=0.8)
        ax.set_yticks(range(len(items)), [label for label, _ in items], fontsize=7.5)
        ax.set_ylim(len(items) - 0.5, -0.5)
        ax.set_title(bench, fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7.5)
        ax.spines[["top", "right"]].set_visible(False)
    legend(fig, quantizers, colors, "Δ = quantized − fp32 per metric (dot: one model; diamond: the mean)")
    return fig


def _balance(heights: list[float], n: int) -> list[list[int]]:
    """Split panel indices, in order, into ``n`` columns of similar total height."""
    if n == 1:
        return [list(range(len(heights)))]
    total, acc, cut = sum(heights), 0.0, len(heights)
    for i, h in enumerate(heights):
        if acc + h / 2 > total / 2:
            cut = max(1, i)
            break
        acc += h
    return [list(range(cut)), list(range(cut, len(heights)))]


def _delta_cis(g: pd.DataFrame) -> list[tuple[float, float]] | None:
    """Each row's ``extra["delta_ci"]`` (its model's bootstrap CI of Δ), NaN where absent; None when no row has one."""
    if "extra" not in g:
        return None
    cis = []
    for e in g["extra"]:
        ci = e.get("delta_ci") if isinstance(e, dict) else None
        cis.append((float(ci[0]), float(ci[1])) if ci is not None and len(ci) == 2 else (np.nan, np.nan))
    return cis if any(np.isfinite(lo) for lo, _ in cis) else None


def forest_figure(
    df: pd.DataFrame,
    panels: list[str],
    items: list[str],
    colors: dict | None = None,
    title: str = "",
    xlabel: str = "Δ = quantized − fp32",
    ncols: int = 4,
    panel_titles: dict[str, str] | None = None,
    item_labels: dict[str, str] | None = None,
) -> Figure | None:
    """Δ per model (small dots) and the mean with its 95% CI (bar, t-based, n ≥ 3) for each
    quantizer, per item (rows) and panel (one axis each). ``df`` has columns ``panel``,
    ``item``, ``quantizer``, ``model``, ``delta`` (and optionally ``extra``: a row whose
    ``extra["delta_ci"]`` holds its model's own 95% CI gets a thin bar through its dot).
    Means marked ``*``/``**`` as in the tables."""
    df = df[np.isfinite(df["delta"].to_numpy(dtype=float))]
    panels = [p for p in panels if p in set(df["panel"])]
    items = [i for i in items if i in set(df["item"])]
    if df.empty or not panels or not items:
        return None
    quantizers = [q for q in quantizer_order(df["quantizer"]) if q != FP32]
    colors = _colors(colors, quantizers)
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = new_figure(1.2 + 3.0 * ncols, 0.9 + nrows * (0.5 + 0.42 * len(items) * max(1, len(quantizers) / 2)))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    rng = np.random.default_rng(0)
    step = 0.8 / max(1, len(quantizers))
    groups = {k: g["delta"].to_numpy(dtype=float) for k, g in df.groupby(["panel", "item", "quantizer"])}
    model_cis = {k: _delta_cis(g) for k, g in df.groupby(["panel", "item", "quantizer"])}
    for idx, ax in enumerate(axes.flat):
        if idx >= len(panels):
            ax.set_visible(False)
            continue
        panel = panels[idx]
        for j, q in enumerate(quantizers):
            dots_x, dots_y, means, ys, bars, model_bars = [], [], [], [], [], []
            for i, item in enumerate(items):
                d = groups.get((panel, item, q))
                if d is None or not d.size:
                    continue
                y = i + (j - (len(quantizers) - 1) / 2) * step
                dots_x.append(d)
                dots_y.append(y + rng.uniform(-step / 5, step / 5, d.size))
                ci = model_cis.get((panel, item, q))
                if ci is not None:
                    model_bars.extend([(lo_, yy), (hi_, yy)] for (lo_, hi_), yy in zip(ci, dots_y[-1], strict=True)
                                      if np.isfinite(lo_) and np.isfinite(hi_))
                mean, lo, hi, p = mean_ci(d)
                means.append(mean)
                ys.append(y)
                if np.isfinite(lo):
                    bars.append([(lo, y), (hi, y)])
                star = mark(p)
                if star:
                    ax.annotate(star, (hi if np.isfinite(hi) else mean, y), xytext=(3, -3), textcoords="offset points",
                                fontsize=9, color=colors[q], fontweight="bold")
            if not means:
                continue
            ax.scatter(np.concatenate(dots_x), np.concatenate(dots_y), s=9, color=colors[q], alpha=0.45, lw=0,
                       zorder=2)
            if model_bars:  # each model's own 95% CI (paired bootstrap over its samples), thin and faint
                ax.add_collection(LineCollection(model_bars, colors=colors[q], linewidths=0.7, alpha=0.35, zorder=2,
                                                 label="_model_ci"))
            if bars:
                ax.add_collection(LineCollection(bars, colors=colors[q], linewidths=1.6, zorder=3))
            ax.scatter(means, ys, marker="D", s=26, color=colors[q], edgecolor="white", lw=0.6, zorder=4)
        ax.axvline(0.0, color="0.35", lw=0.8, zorder=1)
        ax.set_yticks(range(len(items)), [(item_labels or {}).get(i, i) for i in items], fontsize=8)
        ax.set_ylim(len(items) - 0.5, -0.5)
        ax.set_title((panel_titles or {}).get(panel, panel), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
        for k in range(1, len(items)):
            ax.axhline(k - 0.5, color="0.9", lw=0.6, zorder=0)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel, fontsize=8)
    legend(fig, quantizers, colors, title)
    return fig


def mean_ci(d: np.ndarray) -> tuple[float, float, float, float]:
    """Mean of the differences ``d`` with the 95% CI and p of :func:`qclip.stats.paired_test` (the same
    numbers as the tables: NaN below MIN_N models; without variance the CI collapses to the mean)."""
    d = np.asarray(d, dtype=float)
    r = paired_test(np.zeros_like(d), d)
    return r["mean_diff"], r["ci_low"], r["ci_high"], r["p"]


def legend(fig: Figure, quantizers, colors: dict, title: str = "", marker: str | None = "D",
           styles: dict | None = None) -> None:
    """One legend above the figure: a marker (or, with ``marker=None``, a line) per quantizer,
    ``title`` over it; ``styles`` maps an entry to its line style."""
    handles = [
        Line2D([], [], marker=marker, ls="", color=colors[q], markersize=6) if marker
        else Line2D([], [], color=colors[q], lw=2, ls=(styles or {}).get(q, "-"))
        for q in quantizers
    ]
    fig.legend(handles, list(quantizers), loc="outside upper center", ncols=min(len(handles), 6) or 1,
               fontsize=8, title=title or None, title_fontsize=9, frameon=False)
