"""The report's tables, as pandas DataFrames of display strings.

Significance tables follow Table 1 of Slyman et al., "You Never Know" (rows:
quantizer × demographic group; one column per metric). Each cell reads
``Δ p=.082* [lo, hi]``: the mean paired difference (quantized − fp32) across
models, the paired t-test p value with its mark (``*`` p < .10, ``**`` p < .05,
unadjusted as in the paper) and the 95% CI of the mean difference.
"""

from __future__ import annotations

import math
import re

import pandas as pd

__all__ = [
    "ACCURACY_METRICS",
    "accuracy_table",
    "cell_status_table",
    "cost_table",
    "fmt",
    "fmt_p",
    "group_label",
    "metric_label",
    "metric_sort_key",
    "significance_table",
]

ACCURACY_METRICS = (
    ("zeroshot", "top1"),
    ("retrieval", "image_retrieval_R@1"),
    ("retrieval", "text_retrieval_R@1"),
)
"""(benchmark, metric) pairs of the accuracy table and the Figure-1 plot."""

FACET_GROUPS = {
    "gender": "Gender (MF)",
    "skin_tone": "Skin Tone (LD)",
    "age_young": "Age (MY)",
    "age_older": "Age (MO)",
}
"""FACET's paired groups as the paper labels them: masculine vs feminine, lighter vs
darker, middle vs young, middle vs older."""

_MINMAX = re.compile(r"^(?P<mm>min|max)_?(?P<base>.*?)(?:@(?P<k>\d+))?$", re.IGNORECASE)
_WIDE_MAX = 6


def fmt(x: float, signed: bool = True) -> str:
    """A number for a table: 4 decimals, scientific below 1e-4, 1 decimal from 100; NaN as '—'.

    >>> fmt(-0.01234), fmt(0.0004), fmt(1e-6), fmt(1234.5), fmt(0.5, signed=False), fmt(float("nan"))
    ('-0.0123', '+0.0004', '+1.0e-06', '+1234.5', '0.5000', '—')
    """
    if x is None or not math.isfinite(x):
        return "—"
    sign = "+" if signed else ""
    if x != 0 and abs(x) < 1e-4:
        return f"{x:{sign}.1e}"
    return f"{x:{sign}.1f}" if abs(x) >= 100 else f"{x:{sign}.4f}"


def fmt_p(p: float) -> str:
    """A p value as the paper writes it (``.082``); ``<.001`` below; NaN as ``n/a``."""
    if p is None or not math.isfinite(p):
        return "n/a"
    if p < 0.001:
        return "<.001"
    return f"{p:.3f}".removeprefix("0")


def metric_label(metric: str) -> str:
    """Display name: ``min_disparity@1`` → ``Min Disparity@1``, ``max_skew@1000`` → ``MaxSkew@1000``."""
    m = _MINMAX.match(metric)
    if m and m["base"]:
        mm, base, k = m["mm"].title(), m["base"], m["k"]
        at = f"@{k}" if k else ""
        if base.lower() == "skew":
            return f"{mm}Skew{at}"
        return f"{mm} {base.replace('_', ' ').title()}{at}"
    return metric


def metric_sort_key(metric: str) -> tuple:
    """Order columns like the paper: by base name, then k, then min before max."""
    m = _MINMAX.match(metric)
    if m and m["base"]:
        return (m["base"].lower(), int(m["k"] or 0), 0 if m["mm"].lower() == "min" else 1)
    return (metric.lower(), 0, 0)


def group_label(benchmark: str, subgroup: str) -> str:
    if not subgroup:
        return "all"
    if benchmark == "facet" and subgroup in FACET_GROUPS:
        return FACET_GROUPS[subgroup]
    return subgroup.replace("_", " ").capitalize()


def _group_order(benchmark: str, subgroup: str) -> int:
    keys = list(FACET_GROUPS) if benchmark == "facet" else []
    return keys.index(subgroup) if subgroup in keys else len(keys)


def _sig_cell(r) -> str:
    if r.n < 3:
        return f"{fmt(r.mean_diff)} (n={r.n}, too few models)"
    p = fmt_p(r.p)
    return f"{fmt(r.mean_diff)} p{'' if p.startswith('<') else '='}{p}{r.mark} [{fmt(r.ci_low)}, {fmt(r.ci_high)}]"


def significance_table(
    stats: pd.DataFrame, benchmark: str, dataset: str | None = None, wide: bool | None = None
) -> pd.DataFrame:
    """Table-1 layout for one benchmark (and dataset) from :func:`qclip.stats.population_stats`.

    Wide (the paper's layout): rows quantizer × group, one column per metric.
    Long (automatic beyond six metrics): rows quantizer × group × metric, with
    separate Δ, p, 95% CI and Holm-adjusted p columns.
    """
    sel = stats[stats["benchmark"] == benchmark]
    if dataset is not None:
        sel = sel[sel["dataset"] == dataset]
    if sel.empty:
        return pd.DataFrame()
    metrics = sorted(sel["metric"].unique(), key=metric_sort_key)
    if wide is None:
        wide = len(metrics) <= _WIDE_MAX
    sel = sel.assign(
        _g=[_group_order(benchmark, s) for s in sel["subgroup"]],
        _m=sel["metric"].map({m: i for i, m in enumerate(metrics)}),
    ).sort_values(["quantizer", "_g", "subgroup", "_m"])
    if not wide:
        return pd.DataFrame(
            {
                "Quantizer": sel["quantizer"],
                "Group": [group_label(benchmark, s) for s in sel["subgroup"]],
                "Metric": sel["metric"].map(metric_label),
                "n": sel["n"].astype(int),
                "Δ mean": sel["mean_diff"].map(fmt),
                "p": [fmt_p(p) + m for p, m in zip(sel["p"], sel["mark"], strict=True)],
                "95% CI": [
                    f"{fmt(lo)}, {fmt(hi)}" for lo, hi in zip(sel["ci_low"], sel["ci_high"], strict=True)
                ],
                "p (Holm)": sel["p_holm"].map(fmt_p),
            }
        ).reset_index(drop=True)
    sel = sel.assign(_cell=[_sig_cell(r) for r in sel.itertuples()])
    table = sel.pivot_table(
        index=["quantizer", "_g", "subgroup"], columns="metric", values="_cell", aggfunc="first", sort=False
    )
    n = sel.groupby(["quantizer", "_g", "subgroup"], sort=False)["n"].max()
    table = table.reindex(columns=metrics).fillna("—")
    out = pd.DataFrame(
        {
            "Quantizer": table.index.get_level_values("quantizer"),
            "Group": [group_label(benchmark, s) for s in table.index.get_level_values("subgroup")],
            "n": n.reindex(table.index).astype(int).to_numpy(),
        }
    )
    for metric in metrics:
        out[metric_label(metric)] = table[metric].to_numpy()
    return out


def _value_cell(value: float, delta: float, quantizer: str) -> str:
    if quantizer == "fp32" or not math.isfinite(delta):
        return fmt(value, signed=False)
    return f"{fmt(value, signed=False)} ({fmt(delta)})"


def _quantizer_order(quantizers) -> list[str]:
    qs = sorted(set(quantizers))
    return (["fp32"] if "fp32" in qs else []) + [q for q in qs if q != "fp32"]


def accuracy_table(rows: pd.DataFrame, metrics=ACCURACY_METRICS) -> pd.DataFrame:
    """Rows model × dataset × metric; one column per quantizer (fp32 first) reading
    ``value (Δ)``, Δ = quantized − fp32 of the same model."""
    keep = pd.Series(False, index=rows.index)
    for bench, metric in metrics:
        keep |= (rows["benchmark"] == bench) & (rows["metric"] == metric)
    sel = rows[keep]
    if sel.empty:
        return pd.DataFrame()
    sel = sel.assign(
        _cell=[
            _value_cell(v, d, q) for v, d, q in zip(sel["value"], sel["delta"], sel["quantizer"], strict=True)
        ]
    )
    table = sel.pivot_table(
        index=["model", "dataset", "metric"], columns="quantizer", values="_cell", aggfunc="first"
    )
    table = table.reindex(columns=_quantizer_order(sel["quantizer"])).fillna("—").reset_index()
    return table.rename(columns={"model": "Model", "dataset": "Dataset", "metric": "Metric"}).rename_axis(
        columns=None
    )


def cost_table(rows: pd.DataFrame, benchmark: str = "throughput") -> pd.DataFrame:
    """Rows model × quantizer; one column per cost metric reading ``value (×ratio to fp32)``."""
    sel = rows[rows["benchmark"] == benchmark]
    if sel.empty:
        return pd.DataFrame()

    def cell(v, ref):
        ratio = v / ref if math.isfinite(ref) and ref != 0 else math.nan
        text = f"{v:.4g}" if math.isfinite(v) else "—"
        return text if not math.isfinite(ratio) else f"{text} (×{ratio:.2f})"

    sel = sel.assign(_cell=[cell(v, r) for v, r in zip(sel["value"], sel["reference"], strict=True)])
    table = sel.pivot_table(index=["model", "quantizer"], columns="metric", values="_cell", aggfunc="first")
    order = {q: i for i, q in enumerate(_quantizer_order(sel["quantizer"]))}
    table = table.sort_index(key=lambda idx: idx.map(order) if idx.name == "quantizer" else idx)
    table = table.reindex(columns=sorted(table.columns, key=metric_sort_key)).fillna("—").reset_index()
    return table.rename(columns={"model": "Model", "quantizer": "Quantizer"}).rename_axis(columns=None)


def cell_status_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Count of cells per status."""
    if cells.empty:
        return pd.DataFrame()
    counts = cells["status"].value_counts()
    return pd.DataFrame({"Status": counts.index.astype(str), "Cells": counts.to_numpy()})
