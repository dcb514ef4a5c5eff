"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no global state).

* :func:`accuracy_figure`: Figure-1 style (Slyman et al., "You Never Know"):
  grouped bars of zero-shot top-1 and retrieval R@1 per model, one bar per quantizer.
* :func:`delta_figures`: for each quantizer, the distribution across models of
  every metric's Δ = quantized − fp32, a violin (when there are at least three
  distinct values) under the jittered points; one panel per benchmark, since
  benchmarks have different units. Cost rows (``throughput``) are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from qclip.report.tables import ACCURACY_METRICS, metric_sort_key

__all__ = ["accuracy_figure", "delta_figures", "save_png"]

_MAX_PANELS = 6
_MAX_ITEMS = 40
_COST_BENCHMARKS = ("throughput",)


def _short(model: str) -> str:
    """``open_clip:ViT-B-32/laion2b`` → ``ViT-B-32/laion2b`` for tick labels."""
    return model.split(":", 1)[-1]


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def _quantizers(qs) -> list[str]:
    qs = sorted(set(qs))
    return (["fp32"] if "fp32" in qs else []) + [q for q in qs if q != "fp32"]


def accuracy_figure(rows: pd.DataFrame) -> Figure | None:
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
    quantizers = _quantizers(pd.concat([p for _, p in panels])["quantizer"])
    fig = _new_figure(max(4.5, 4.2 * len(panels)), 4.0)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    width = 0.8 / len(quantizers)
    colors = {q: f"C{i % 10}" for i, q in enumerate(quantizers)}
    for ax, (title, part) in zip(axes, panels, strict=True):
        table = part.pivot_table(index="model", columns="quantizer", values="value", aggfunc="mean")
        x = np.arange(len(table.index))
        for i, q in enumerate(quantizers):
            if q in table:
                ax.bar(
                    x + (i - (len(quantizers) - 1) / 2) * width,
                    table[q].to_numpy(),
                    width,
                    label=q,
                    color=colors[q],
                )
        ax.set_xticks(x, [_short(m) for m in table.index], rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("value")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=min(len(quantizers), 6), fontsize=8)
    return fig


def _panel_items(part: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    several = part["dataset"].nunique() > 1
    items = []
    keys = sorted(
        part.groupby(["metric", "subgroup", "dataset"]).groups,
        key=lambda k: (metric_sort_key(k[0]), k[1], k[2]),
    )
    for metric, subgroup, dataset in keys[:_MAX_ITEMS]:
        sel = part[(part["metric"] == metric) & (part["subgroup"] == subgroup) & (part["dataset"] == dataset)]
        label = metric + (f" [{subgroup}]" if subgroup else "") + (f" ({dataset})" if several else "")
        items.append((label, sel["delta"].to_numpy(dtype=float)))
    return items


def delta_figures(rows: pd.DataFrame) -> dict[str, Figure]:
    """One figure per quantizer (fp32 excluded): Δ across models, per metric, per benchmark."""
    data = rows[(rows["quantizer"] != "fp32") & ~rows["benchmark"].isin(_COST_BENCHMARKS)]
    data = data[np.isfinite(data["delta"])]
    rng = np.random.default_rng(0)
    figures = {}
    for quantizer, qrows in data.groupby("quantizer", sort=True):
        panels = [(bench, _panel_items(part)) for bench, part in qrows.groupby("benchmark", sort=True)]
        heights = [0.6 + 0.32 * len(items) for _, items in panels]
        fig = _new_figure(7.5, 0.6 + sum(heights))
        axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
        for ax, (bench, items) in zip(axes, panels, strict=True):
            y = np.arange(len(items))
            violins = [(i, v) for i, (_, v) in enumerate(items) if np.unique(v).size >= 3]
            if violins:
                parts = ax.violinplot(
                    [v for _, v in violins],
                    positions=[i for i, _ in violins],
                    orientation="horizontal",
                    showextrema=False,
                    widths=0.8,
                )
                for body in parts["bodies"]:
                    body.set_alpha(0.25)
            for i, (_, v) in enumerate(items):
                ax.scatter(v, i + rng.uniform(-0.15, 0.15, v.size), s=12, color="C3", zorder=3)
            ax.axvline(0.0, color="0.4", lw=0.8)
            ax.set_yticks(y, [label for label, _ in items], fontsize=8)
            ax.set_ylim(-0.6, len(items) - 0.4)
            ax.invert_yaxis()
            ax.set_title(f"{bench}", fontsize=9, loc="left")
            ax.grid(axis="x", alpha=0.3)
        axes[-1].set_xlabel("Δ = quantized − fp32 (one point per model)")
        fig.suptitle(f"{quantizer}: change per metric across models", fontsize=10)
        figures[quantizer] = fig
    return figures
