"""Figures of the fairness sections: per-model Δ and the population mean ± 95% CI (forest plots)
of FACET min/max disparity per group and FairFace MaxSkew / MinSkew / NDKL per attribute."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from qclip.report.data import paired, select
from qclip.report.plots import forest_figure
from qclip.report.sections_fairness import (
    FACET_SUMMARY,
    FAIRFACE_ATTRIBUTES,
    FAIRFACE_SUMMARY,
    split_fairface,
)
from qclip.report.tables import FACET_GROUPS, metric_label, metric_sort_key

__all__ = ["facet_figure", "fairface_figure"]


def _items(df: pd.DataFrame, key, label) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    several = df["dataset"].nunique() > 1
    items = [f"{key(s)}|{d}" for s, d in zip(df["subgroup"], df["dataset"], strict=True)]
    labels = {i: label(i.split("|")[0]) + (f"\n({i.split('|')[1]})" if several else "") for i in set(items)}
    return df.assign(item=items), items, labels


def facet_figure(rows: pd.DataFrame, colors: dict | None = None) -> Figure | None:
    data = paired(select(rows, "facet", pattern=FACET_SUMMARY))
    data = data[~data["subgroup"].str.contains("/")]
    if data.empty:
        return None
    data, items, labels = _items(data, lambda s: s, lambda s: FACET_GROUPS.get(s, s))
    order = list(FACET_GROUPS)
    items = sorted(set(items), key=lambda i: (order.index(i.split("|")[0]) if i.split("|")[0] in order else 99, i))
    panels = sorted(data["metric"].unique(), key=metric_sort_key)
    return forest_figure(
        data.assign(panel=data["metric"]), panels, items, colors,
        title="FACET disparity: Δ per model (dots, thin bar: its bootstrap 95% CI), mean ± 95% CI (diamond, bar)",
        panel_titles={m: metric_label(m) for m in panels}, item_labels=labels, ncols=4,
    )


def fairface_figure(rows: pd.DataFrame, colors: dict | None = None) -> Figure | None:
    data = paired(select(rows, "fairface", pattern=FAIRFACE_SUMMARY))
    parts = [split_fairface(s) for s in data["subgroup"]]
    data = data[[not p[2] for p in parts]]
    if data.empty:
        return None
    desired = [split_fairface(s)[1] for s in data["subgroup"]]
    data = data.assign(panel=[f"{m}|{d}" for m, d in zip(data["metric"], desired, strict=True)])
    data, items, labels = _items(data, lambda s: split_fairface(s)[0],
                                 lambda a: FAIRFACE_ATTRIBUTES.get(a, a))
    order = list(FAIRFACE_ATTRIBUTES)
    items = sorted(set(items), key=lambda i: (order.index(i.split("|")[0]) if i.split("|")[0] in order else 99, i))
    base = {"max_skew": 0, "min_skew": 1, "ndkl": 2}
    panels = sorted(set(data["panel"]), key=lambda p: (p.split("|")[1] != "parity",
                                                       int(p.split("|")[0].rpartition("@")[2]),
                                                       base.get(p.split("@")[0], 9)))
    names = {"parity": "demographic parity", "uniform": "equal representation"}
    titles = {p: f"{metric_label(p.split('|')[0])} · {names.get(p.split('|')[1], p.split('|')[1])}" for p in panels}
    return forest_figure(
        data, panels, items, colors, title="FairFace skew: Δ per model (dots), mean ± 95% CI (diamond, bar)",
        panel_titles=titles, item_labels=labels, ncols=3,
    )
