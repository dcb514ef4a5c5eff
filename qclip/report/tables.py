"""The report's tables, as pandas DataFrames of display values (str or :class:`~.blocks.Cell`).

Significance tables follow Table 1 of Slyman et al., "You Never Know" (rows:
quantizer × demographic group; one column per metric). Each cell reads
``Δ p=.082* [lo, hi]``: the mean paired difference (quantized − fp32) across
models, the paired t-test p value with its mark (``*`` p < .10, ``**`` p < .05,
unadjusted as in the paper) and the 95% CI of the mean difference. The Verdict column reads each finding
as *different*, *equivalent ±m* (TOST against the metric's margin) or *inconclusive*, with the minimum
detectable Δ of a finding that is not significant (:mod:`qclip.stats`).
"""

from __future__ import annotations

import html
import math
import re

import pandas as pd

from qclip.report.blocks import Cell
from qclip.report.data import quantizer_order
from qclip.stats import MIN_N

__all__ = [
    "ACCURACY_METRICS",
    "FACET_GROUPS",
    "accuracy_table",
    "cell_status_table",
    "change_cell",
    "compact_sig_cell",
    "fmt",
    "fmt_like",
    "fmt_p",
    "group_label",
    "metric_label",
    "metric_sort_key",
    "pct_sig_cell",
    "sig_cell",
    "significance_table",
    "stats_table",
    "verdict_text",
    "verdicts_cell",
]

ACCURACY_METRICS = (
    ("zeroshot", "top1"),
    ("retrieval", "image_retrieval_R@1"),
    ("retrieval", "text_retrieval_R@1"),
)
"""(benchmark, metric) pairs of the accuracy table and the Figure-1 plot."""

FACET_GROUPS = {
    "gender": "Gender (M–F)",
    "skin_tone": "Skin tone (L–D)",
    "age_young": "Age (M–Y)",
    "age_older": "Age (M–O)",
}
"""FACET's paired groups as the paper labels them: masculine − feminine, lighter − darker,
middle − young, middle − older (disparity = recall of the first − recall of the second)."""

_MINMAX = re.compile(r"^(?P<mm>min|max)_?(?P<base>.*?)(?:@(?P<k>\d+))?$", re.IGNORECASE)
_WIDE_MAX = 6
_UPPER = {"skew": "Skew", "disparity": "Disparity", "ndkl": "NDKL", "ece": "ECE", "mce": "MCE", "nll": "NLL", "auroc": "AUROC", "fpr95": "FPR95"}


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


def fmt_like(*values: float):
    """A formatter for numbers shown together (a Δ and its CI): 4 fixed decimals (1 from 100), or
    scientific for all of them when the largest is below 1e-3, so a cell never mixes the two.

    >>> f = fmt_like(-9.3e-05, -0.0085, 0.0083); f(-9.3e-05), f(0.0083)
    ('-0.0001', '+0.0083')
    >>> fmt_like(2.3e-05, 6.5e-05)(2.3e-05)
    '+2.30e-05'
    """
    scale = max((abs(v) for v in values if v is not None and math.isfinite(v)), default=0.0)

    def f(x: float) -> str:
        if x is None or not math.isfinite(x):
            return "—"
        if 0 < scale < 1e-3:
            return f"{x:+.2e}"
        return f"{x:+.1f}" if scale >= 100 else f"{x:+.4f}"

    return f


def fmt_p(p: float) -> str:
    """A p value as the paper writes it (``.082``); ``<.001`` below; NaN as ``n/a``."""
    if p is None or not math.isfinite(p):
        return "n/a"
    if p < 0.001:
        return "<.001"
    return f"{p:.3f}".removeprefix("0")


def metric_label(metric: str) -> str:
    """Display name: ``min_disparity@1`` → ``Min Disparity@1``, ``max_skew@1000`` → ``MaxSkew@1000``,
    ``ndkl@1000`` → ``NDKL@1000``."""
    m = _MINMAX.match(metric)
    if m and m["base"]:
        mm, base, k = m["mm"].title(), m["base"], m["k"]
        at = f"@{k}" if k else ""
        if base.lower() == "skew":
            return f"{mm}Skew{at}"
        return f"{mm} {base.replace('_', ' ').title()}{at}"
    base, at, k = metric.partition("@")
    if base.lower() in _UPPER:
        return _UPPER[base.lower()] + at + k
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


def _num(x: float) -> str:
    """A margin or MDE: up to 4 significant decimals, no sign (``0.02``, ``0.0113``)."""
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.2e}" if 0 < abs(x) < 1e-3 else f"{x:.4f}".rstrip("0").rstrip(".")


def verdict_text(r) -> str:
    """The verdict of one stats row: ``different``, ``equivalent ±0.02 (MDE 0.011)``, ``inconclusive (MDE
    0.031 > ±0.02: too few models)``, ``inconclusive (MDE 0.0040, no margin)``; ``n too small`` below
    :data:`qclip.stats.MIN_N` models. MDE: the mean Δ the t-test would have found with 80% power.

    >>> from types import SimpleNamespace as R
    >>> verdict_text(R(n=8, verdict="inconclusive", margin=0.02, mde=0.031))
    'inconclusive (MDE 0.031 > ±0.02: too few models)'
    """
    v, margin, mde = getattr(r, "verdict", ""), getattr(r, "margin", math.nan), getattr(r, "mde", math.nan)
    if int(r.n) < MIN_N or not v:
        return "n too small"
    if v == "different":
        return "different"
    has_margin = margin is not None and math.isfinite(margin)
    if v == "equivalent":
        return f"equivalent ±{_num(margin)}" + (f" (MDE {_num(mde)})" if math.isfinite(mde) else "")
    if not math.isfinite(mde):
        return "inconclusive"
    if not has_margin:
        return f"inconclusive (MDE {_num(mde)}, no margin)"
    if mde > margin:
        return f"inconclusive (MDE {_num(mde)} > ±{_num(margin)}: too few models)"
    return f"inconclusive (MDE {_num(mde)})"


_VERDICT_CSS = {"different": "vdiff", "equivalent": "vequiv"}


def verdicts_cell(rows: list, labels: list[str]) -> Cell:
    """The Verdict cell of a wide row: one verdict when the row's metrics agree, else ``label: verdict`` for
    each metric, joined by `` · ``."""
    texts = [verdict_text(r) for r in rows]
    if not texts:
        return Cell("—")
    if len(set(texts)) == 1:
        text = texts[0]
    else:
        text = " · ".join(f"{lab}: {t}" for lab, t in zip(labels, texts, strict=True))
    kinds = {getattr(r, "verdict", "") for r in rows}
    css = _VERDICT_CSS.get(next(iter(kinds)), "") if len(kinds) == 1 else ""
    return Cell(text, html.escape(text), css)


def pct_sig_cell(r) -> Cell:
    """:func:`sig_cell` of a ratio metric, in percent: ``-12.3% p=.041** [-20.1%, -4.5%]``."""
    def f(x):
        return "—" if x is None or not math.isfinite(x) else f"{100 * x:+.1f}%"

    n = int(r.n)
    if n < MIN_N:
        return Cell(f"{f(r.mean_diff)} (n={n}: n too small)",
                    f'<b>{f(r.mean_diff)}</b><span class="s">n={n}: n too small</span>', "muted")
    if int(getattr(r, "n_same", 0)) == n:
        return Cell(f"{f(r.mean_diff)} (no model changed)",
                    f'<b>{f(r.mean_diff)}</b><span class="s">no model changed</span>', "muted")
    p = fmt_p(r.p)
    ptext = f"p{'' if p.startswith('<') else '='}{p}{r.mark}"
    ci = f"[{f(r.ci_low)}, {f(r.ci_high)}]"
    css = {"**": "sig05", "*": "sig10"}.get(r.mark, "")
    return Cell(f"{f(r.mean_diff)} {ptext} {ci}",
                f'<b>{f(r.mean_diff)}</b><span class="s">{html.escape(ptext)} {ci}</span>', css)


def sig_cell(r, digits: int | None = None) -> Cell:
    """One stats row (of :func:`qclip.stats.population_stats`) as a table cell.

    Text: ``+0.0123 p=.082* [-0.0200, +0.0010]``; below :data:`qclip.stats.MIN_N`
    models ``+0.0123 (n=2: n too small)``; when no model changed ``+0.0000 (no
    model changed)``. HTML: the Δ in bold over a small line with p and the CI; the
    cell is shaded like the paper's tables (``sig10`` yellow, ``sig05`` green).
    """
    f = fmt_like(r.mean_diff, r.ci_low, r.ci_high) if digits is None else (lambda x: _fmt_digits(x, digits))
    n = int(r.n)
    delta = f(r.mean_diff)
    if n < MIN_N:
        text = f"{delta} (n={n}: n too small)"
        return Cell(text, f'<b>{delta}</b><span class="s">n={n}: n too small</span>', "muted")
    if int(getattr(r, "n_same", 0)) == n:
        return Cell(f"{delta} (no model changed)", f'<b>{delta}</b><span class="s">no model changed</span>', "muted")
    p = fmt_p(r.p)
    ptext = f"p{'' if p.startswith('<') else '='}{p}{r.mark}"
    ci = f"[{f(r.ci_low)}, {f(r.ci_high)}]"
    css = {"**": "sig05", "*": "sig10"}.get(r.mark, "")
    return Cell(f"{delta} {ptext} {ci}", f'<b>{delta}</b><span class="s">{html.escape(ptext)} {ci}</span>', css)


def compact_sig_cell(r) -> Cell:
    """A short form of :func:`sig_cell` for detail tables: ``+0.0123 (p=.082*)``."""
    n = int(r.n)
    delta = fmt(r.mean_diff)
    if n < MIN_N:
        return Cell(f"{delta} (n={n})", css="muted")
    if int(getattr(r, "n_same", 0)) == n:
        return Cell(f"{delta} (no change)", css="muted")
    p = fmt_p(r.p)
    text = f"{delta} (p{'' if p.startswith('<') else '='}{p}{r.mark})"
    return Cell(text, css={"**": "sig05", "*": "sig10"}.get(r.mark, ""))


def _fmt_digits(x: float, digits: int) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:+.{digits}f}"


def change_cell(ref: float, value: float, relative: bool = False, digits: int = 4) -> Cell:
    """``ref → value`` with the change (absolute, or relative in % when ``relative``)."""
    if not math.isfinite(ref) and not math.isfinite(value):
        return Cell("—")
    a, b = f"{ref:.{digits}f}" if math.isfinite(ref) else "—", f"{value:.{digits}f}" if math.isfinite(value) else "—"
    if relative and math.isfinite(ref) and ref != 0 and math.isfinite(value):
        ch = f"{100 * (value - ref) / abs(ref):+.1f}%"
    elif math.isfinite(ref) and math.isfinite(value):
        ch = f"{value - ref:+.{digits}f}"
    else:
        ch = ""
    text = f"{a} → {b}" + (f" ({ch})" if ch else "")
    return Cell(text, f'{a} → <b>{b}</b>' + (f'<span class="s">{ch}</span>' if ch else ""))


def significance_table(
    stats: pd.DataFrame, benchmark: str, dataset: str | None = None, wide: bool | None = None,
    metrics: list[str] | None = None, subgroups: list[str] | None = None, group_name: str = "Group",
    labels: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Table-1 layout for one benchmark (and dataset) from :func:`qclip.stats.population_stats`.

    Wide (the paper's layout): rows quantizer × group, one column per metric.
    Long (automatic beyond six metrics): rows quantizer × group × metric, with
    separate Δ, p, 95% CI and Holm-adjusted p columns. ``metrics`` / ``subgroups``
    restrict (and order) what is shown; ``labels`` maps a subgroup to its row label.
    """
    sel = stats[stats["benchmark"] == benchmark]
    if dataset is not None:
        sel = sel[sel["dataset"] == dataset]
    if metrics is not None:
        sel = sel[sel["metric"].isin(metrics)]
    if subgroups is not None:
        sel = sel[sel["subgroup"].isin(subgroups)]
    if sel.empty:
        return pd.DataFrame()
    metrics = [m for m in metrics if m in set(sel["metric"])] if metrics is not None else sorted(
        sel["metric"].unique(), key=metric_sort_key
    )
    sub_order = {s: i for i, s in enumerate(subgroups)} if subgroups is not None else {}

    def label(s):
        return (labels or {}).get(s) or group_label(benchmark, s)

    if wide is None:
        wide = len(metrics) <= _WIDE_MAX
    sel = sel.assign(
        _g=[sub_order.get(s, _group_order(benchmark, s)) for s in sel["subgroup"]],
        _m=sel["metric"].map({m: i for i, m in enumerate(metrics)}),
    ).sort_values(["quantizer", "_g", "subgroup", "_m"])
    if not wide:
        return pd.DataFrame(
            {
                "Quantizer": sel["quantizer"],
                group_name: [label(s) for s in sel["subgroup"]],
                "Metric": sel["metric"].map(metric_label),
                "n": sel["n"].astype(int),
                "Δ mean": sel["mean_diff"].map(fmt),
                "p": [fmt_p(p) + m for p, m in zip(sel["p"], sel["mark"], strict=True)],
                "95% CI": [
                    f"{fmt(lo)}, {fmt(hi)}" for lo, hi in zip(sel["ci_low"], sel["ci_high"], strict=True)
                ],
                "p (Holm)": sel["p_holm"].map(fmt_p),
                "Verdict": [verdict_text(r) for r in sel.itertuples()],
            }
        ).reset_index(drop=True)
    cells = {(r.quantizer, r.subgroup, r.metric): sig_cell(r) for r in sel.itertuples()}
    found = {(r.quantizer, r.subgroup, r.metric): r for r in sel.itertuples()}
    keys = list(dict.fromkeys(zip(sel["quantizer"], sel["subgroup"], strict=True)))
    n = sel.groupby(["quantizer", "subgroup"])["n"].max()
    out = pd.DataFrame(
        {
            "Quantizer": [q for q, _ in keys],
            group_name: [label(s) for _, s in keys],
            "n": [int(n[k]) for k in keys],
        }
    )
    for metric in metrics:
        out[metric_label(metric)] = [cells.get((q, s, metric), "—") for q, s in keys]
    verdicts = []
    for q, s in keys:
        present = [(metric_label(m), found[(q, s, m)]) for m in metrics if (q, s, m) in found]
        verdicts.append(verdicts_cell([r for _, r in present], [lab for lab, _ in present]))
    out["Verdict"] = verdicts
    return out


def stats_table(
    stats: pd.DataFrame, benchmark: str, metrics: list[str], dataset: str | None = None,
    labels: dict[str, str] | None = None, subgroup: str | None = "",
) -> pd.DataFrame:
    """Rows quantizer × metric (in the order given): n, fp32 mean, quantized mean, Δ with p and
    CI, Holm-adjusted p, how many models went up / down, and the verdict (:func:`verdict_text`)."""
    sel = stats[(stats["benchmark"] == benchmark) & stats["metric"].isin(metrics)]
    if dataset is not None:
        sel = sel[sel["dataset"] == dataset]
    if subgroup is not None:
        sel = sel[sel["subgroup"] == subgroup]
    if sel.empty:
        return pd.DataFrame()
    order = {m: i for i, m in enumerate(metrics)}
    sel = sel.assign(_m=sel["metric"].map(order)).sort_values(["quantizer", "_m", "subgroup"])
    return pd.DataFrame(
        {
            "Quantizer": sel["quantizer"].to_numpy(),
            "Metric": [(labels or {}).get(m, metric_label(m)) + (f" [{g}]" if g else "")
                       for m, g in zip(sel["metric"], sel["subgroup"], strict=True)],
            "n": sel["n"].astype(int).to_numpy(),
            "fp32": [_plain(a, a, b) for a, b in zip(sel["mean_ref"], sel["mean_q"], strict=True)],
            "quantized": [_plain(b, a, b) for a, b in zip(sel["mean_ref"], sel["mean_q"], strict=True)],
            "Δ (p, 95% CI)": [sig_cell(r) for r in sel.itertuples()],
            "p (Holm)": sel["p_holm"].map(fmt_p).to_numpy(),
            "models ↑/↓": [f"{int(u)}/{int(d)}" for u, d in zip(sel["n_up"], sel["n_down"], strict=True)],
            "Verdict": [verdict_text(r) for r in sel.itertuples()],
        }
    )


def _plain(x: float, *scale: float) -> str:
    """``x`` unsigned, in the format :func:`fmt_like` picks for ``scale``."""
    return fmt_like(*scale)(x).removeprefix("+")


def _value_cell(value: float, delta: float, quantizer: str) -> str:
    if quantizer == "fp32" or not math.isfinite(delta):
        return fmt(value, signed=False)
    return f"{fmt(value, signed=False)} ({fmt(delta)})"


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
    table = table.reindex(columns=quantizer_order(sel["quantizer"])).fillna("—").reset_index()
    return table.rename(columns={"model": "Model", "dataset": "Dataset", "metric": "Metric"}).rename_axis(
        columns=None
    )


def cell_status_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Count of cells per status."""
    if cells.empty:
        return pd.DataFrame()
    counts = cells["status"].value_counts()
    return pd.DataFrame({"Status": counts.index.astype(str), "Cells": counts.to_numpy()})
