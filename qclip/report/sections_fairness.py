"""The fairness sections: FACET recall disparity (Table 1 of Slyman et al.) and FairFace retrieval
skew (their Table 2, for both desired distributions), with per-class / per-value details collapsed."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from qclip.report.blocks import Bullets, Details, Heading, Para, Section, Table
from qclip.report.common import SIG_CAPTION, empty, figure, largest_changes, n_models_note
from qclip.report.data import fp32_values, quantizer_order, select, short_model
from qclip.report.tables import (
    FACET_GROUPS,
    compact_sig_cell,
    metric_label,
    metric_sort_key,
    significance_table,
)

__all__ = ["FAIRFACE_ATTRIBUTES", "facet_section", "fairface_section", "split_fairface"]

FACET_SUMMARY = r"(?:min|max)_disparity@\d+"
FACET_DETAIL = r"disparity@\d+"
FAIRFACE_SUMMARY = r"(?:max_skew|min_skew|ndkl)@\d+"
FAIRFACE_DETAIL = r"skew@\d+"
FAIRFACE_ATTRIBUTES = {"gender": "Gender", "race": "Race", "age_bin": "Age (binned)", "age": "Age"}
"""Attribute → label, in the order of the paper's Table 2."""

_FACET_ABOUT = (
    "Disparity of a person class = recall@K of the first subgroup − recall@K of the second "
    "(masculine − feminine, lighter − darker skin (Monk 1–4 vs 6–10), middle − young, middle − older); "
    "0 is equality of opportunity. Min and max are taken over the classes with enough people in both "
    "subgroups. Slyman et al. found no consistent change across a population of models. With 16 tests per "
    "quantizer, one or two marks at p < .10 are expected by chance alone: read them next to the "
    "Holm-adjusted p in `stats.csv` and the per-model dots of the figure."
)
_FAIRFACE_ABOUT = (
    "For each neutral prompt the top-k faces are retrieved; Skew_a@k = ln(p_a / desired_a) for each "
    "attribute value a, MaxSkew@k (the largest unfair advantage) and MinSkew@k (the worst "
    "under-representation) are averaged over prompts; NDKL@k is the normalised discounted KL "
    "divergence (0 = the desired distribution at every cut-off). 0 is fair for all three."
)


def _facet_groups(subgroups) -> list[str]:
    known = [g for g in FACET_GROUPS if g in set(subgroups)]
    return known + sorted(set(subgroups) - set(known))


def _facet_fp32_table(data: pd.DataFrame) -> pd.DataFrame:
    """Rows model (× dataset); columns group × K: the fp32 range ``min … max`` of disparity."""
    fp = fp32_values(data).reset_index()
    if fp.empty:
        return pd.DataFrame()
    fp["k"] = fp["metric"].str.extract(r"@(\d+)$")[0].astype(int)
    fp["mm"] = fp["metric"].str[:3]
    several = fp["dataset"].nunique() > 1
    cols = [(g, k) for g in _facet_groups(fp["subgroup"]) for k in sorted(fp["k"].unique())]
    out = []
    for (model, dataset), part in fp.groupby(["model", "dataset"], sort=True):
        row = {"Model": short_model(model)} | ({"Dataset": dataset} if several else {})
        for g, k in cols:
            v = part[(part["subgroup"] == g) & (part["k"] == k)].set_index("mm")["value"]
            lo, hi = v.get("min", np.nan), v.get("max", np.nan)
            row[f"{FACET_GROUPS.get(g, g)} @{k}"] = "—" if np.isnan(lo) and np.isnan(hi) else f"{lo:+.3f}\u00a0…\u00a0{hi:+.3f}"
        out.append(row)
    return pd.DataFrame(out)


def _class_counts(data: pd.DataFrame) -> str:
    """Qualifying classes per group (from the rows' ``n_classes``, NaN rows included)."""
    counts, none = [], []
    for g in _facet_groups(data["subgroup"]):
        ns = [e.get("n_classes") for e in data.loc[data["subgroup"] == g, "extra"] if isinstance(e, dict)]
        ns = [int(n) for n in ns if isinstance(n, (int, float))]
        if ns:
            counts.append(f"{FACET_GROUPS.get(g, g)} {min(ns)}" + (f"–{max(ns)}" if max(ns) != min(ns) else ""))
            if max(ns) == 0:
                none.append(FACET_GROUPS.get(g, g))
    text = ("Classes counted per group: " + ", ".join(counts) + ".") if counts else ""
    if none:
        text += (f" No class had enough people in both subgroups for {', '.join(none)}, so that group has no "
                 "row above.")
    return text


def _detail_table(sel: pd.DataFrame, key_cols: dict, ref_label: str, after_ref: dict | None = None,
                  first_order: list[str] | None = None) -> pd.DataFrame:
    """Rows one per detail key (``key_cols``: column → function of a stats row), the fp32 mean and
    one compact Δ column per quantizer; sorted by the key, largest |Δ| first within it."""
    quantizers = [q for q in quantizer_order(sel["quantizer"])]
    rows, keyed = [], {}
    for r in sel.itertuples(index=False):
        key = (r.dataset, r.metric, r.subgroup)
        entry = keyed.setdefault(key, {"_r": r, "_abs": 0.0})
        entry[r.quantizer] = compact_sig_cell(r)
        entry["_abs"] = max(entry["_abs"], abs(r.mean_diff) if np.isfinite(r.mean_diff) else 0.0)
    for entry in keyed.values():
        r = entry["_r"]
        row = {name: f(r) for name, f in key_cols.items()}
        row[ref_label] = f"{r.mean_ref:+.3f}" if np.isfinite(r.mean_ref) else "—"
        row |= {name: f(r) for name, f in (after_ref or {}).items()}
        row |= {f"Δ {q}": entry.get(q, "—") for q in quantizers}
        row["_abs"] = entry["_abs"]
        rows.append(row)
    out = pd.DataFrame(rows)
    first = list(key_cols)[0]
    seen = list(dict.fromkeys(out[first]))
    order = {v: i for i, v in enumerate([v for v in first_order or [] if v in seen] + sorted(set(seen) - set(first_order or [])))}
    out = out.assign(_k=out[first].map(order)).sort_values(["_k", "_abs"], ascending=[True, False])
    return out.drop(columns=["_k", "_abs"]).reset_index(drop=True)


def facet_section(rows: pd.DataFrame, stats: pd.DataFrame, images: dict, cells=None) -> Section:
    sec = Section("Fairness: FACET disparity (Table 1 layout)")
    st = stats[stats["benchmark"] == "facet"] if not stats.empty else stats
    summary = st[st["metric"].str.fullmatch(FACET_SUMMARY) & ~st["subgroup"].str.contains("/")] if not st.empty else st
    if summary.empty:
        sec.blocks.append(empty("facet", cells))
        return sec
    data = select(rows, "facet", pattern=FACET_SUMMARY)
    sec.blocks.append(Para(_FACET_ABOUT))
    if (note := n_models_note(summary)) is not None:
        sec.blocks.append(note)
    for dataset in sorted(summary["dataset"].unique()):
        part = summary[summary["dataset"] == dataset]
        metrics = sorted(part["metric"].unique(), key=metric_sort_key)
        table = significance_table(summary, "facet", dataset, wide=True, metrics=metrics,
                                   subgroups=_facet_groups(part["subgroup"]))
        sec.blocks.append(Table(table, f"`facet` on `{dataset}`. {SIG_CAPTION}", group_col="Quantizer"))
    sec.blocks += figure(images, "facet", "FACET: change of min/max disparity per model and group",
                         "Each dot is one model's Δ (quantized − fp32); diamonds and bars are the mean and its "
                         "95% CI across models. Dots on both sides of 0 are the paper's \"inconsistent\" biases.")
    fp = _facet_fp32_table(data)
    if not fp.empty:
        sec.blocks.append(Heading("fp32 disparity per model"))
        counts = _class_counts(select(rows, "facet", pattern=FACET_SUMMARY, finite=False))
        sec.blocks.append(Table(fp, "Range over classes, min … max, of the fp32 model (the starting point of every Δ "
                                    "above). " + counts))
    detail = st[st["metric"].str.fullmatch(FACET_DETAIL) & st["subgroup"].str.contains("/")]
    if not detail.empty:

        def label(r):
            group, _, cls = r.subgroup.partition("/")
            return f"{FACET_GROUPS.get(group, group)} · `{cls}` · {metric_label(r.metric).title()}"

        table = _detail_table(detail, {
            "Group": lambda r: FACET_GROUPS.get(r.subgroup.partition("/")[0], r.subgroup.partition("/")[0]),
            "Class": lambda r: r.subgroup.partition("/")[2],
            "K": lambda r: r.metric.rpartition("@")[2],
        }, "fp32 disparity", first_order=list(FACET_GROUPS.values()))
        n_classes = detail["subgroup"].str.partition("/")[2].nunique()
        md = [Para("**Largest per-class changes** (mean Δ of the per-class disparity across models; all classes in "
                   "report.html and `stats.csv`):"), Bullets(largest_changes(detail, label))]
        sec.blocks.append(Details(f"Per-class disparity: {n_classes} classes, {len(table)} rows (mean Δ per quantizer)",
                                  [Table(table, "Sorted by group, largest |Δ| first. " + SIG_CAPTION,
                                         group_col="Group")], md))
    return sec


def split_fairface(subgroup: str) -> tuple[str, str, str]:
    """``race`` → (race, parity, ''), ``race/uniform/White`` → (race, uniform, White)."""
    attr, _, rest = subgroup.partition("/")
    if rest == "uniform" or rest.startswith("uniform/"):
        return attr, "uniform", rest.partition("/")[2]
    return attr, "parity", rest


def _fairface_k_note(data: pd.DataFrame) -> str:
    extras = [e for e in data["extra"] if isinstance(e, dict)]
    ks = Counter(int(e["k"]) for e in extras if isinstance(e.get("k"), (int, float)))
    prompts = sorted({int(e["n_prompts"]) for e in extras if isinstance(e.get("n_prompts"), (int, float))})
    capped = any(bool(e.get("k_capped")) for e in extras)
    if not ks:
        return ""
    text = f"k = {', '.join(str(k) for k in sorted(ks))}"
    if prompts:
        text += f", averaged over {prompts[0] if len(prompts) == 1 else f'{prompts[0]}–{prompts[-1]}'} prompts"
    if capped:
        text += "; **k was capped at the size of the set**: with so few faces per prompt skew is coarse"
    return text + "."


def _fairface_details(detail: pd.DataFrame) -> list:
    """Per-value skew: a value's Δ skew is the same under both desired distributions (they only
    shift its skew by a constant), so one row per value, parity where recorded, with both fp32 skews."""
    parts = [split_fairface(s) for s in detail["subgroup"]]
    detail = detail.assign(ff_attr=[p[0] for p in parts], ff_desired=[p[1] for p in parts], ff_value=[p[2] for p in parts])
    have_parity = set(zip(detail.loc[detail["ff_desired"] == "parity", "ff_attr"],
                          detail.loc[detail["ff_desired"] == "parity", "ff_value"], strict=True))
    pairs = zip(detail["ff_attr"], detail["ff_value"], strict=True)
    keep = (detail["ff_desired"] == "parity").to_numpy() | np.array([p not in have_parity for p in pairs], dtype=bool)
    uniform_ref = {(r.quantizer, r.dataset, r.metric, r.ff_attr, r.ff_value): r.mean_ref
                   for r in detail[detail["ff_desired"] == "uniform"].itertuples(index=False)}
    detail = detail[keep]

    def attr(r):
        a = split_fairface(r.subgroup)[0]
        return FAIRFACE_ATTRIBUTES.get(a, a)

    def label(r):
        return f"{attr(r)} = `{split_fairface(r.subgroup)[2]}` · {metric_label(r.metric)}"

    def uniform(r):
        a, _, v = split_fairface(r.subgroup)
        x = uniform_ref.get((r.quantizer, r.dataset, r.metric, a, v), np.nan)
        return f"{x:+.3f}" if np.isfinite(x) else "—"

    table = _detail_table(detail.drop(columns=["ff_attr", "ff_desired", "ff_value"]), {
        "Attribute": attr,
        "Value": lambda r: split_fairface(r.subgroup)[2],
        "k": lambda r: r.metric.rpartition("@")[2],
    }, "fp32 skew (parity)", {"fp32 skew (equal repr.)": uniform}, first_order=list(FAIRFACE_ATTRIBUTES.values()))
    md = [Para("**Largest per-value changes** (mean Δ of Skew@k of one attribute value, the same under both "
               "desired distributions; all values in report.html and `stats.csv`):"),
          Bullets(largest_changes(detail.drop(columns=["ff_attr", "ff_desired", "ff_value"]), label))]
    return [Details(f"Skew per attribute value: {len(table)} values (mean Δ per quantizer)",
                    [Table(table, "Positive skew: the value is over-represented in the top k. A value's Δ is the "
                                  "same for both desired distributions. " + SIG_CAPTION, group_col="Attribute")], md)]


def fairface_section(rows: pd.DataFrame, stats: pd.DataFrame, images: dict, cells=None) -> Section:
    sec = Section("Fairness: FairFace retrieval skew")
    st = stats[stats["benchmark"] == "fairface"] if not stats.empty else stats
    summary = st[st["metric"].str.fullmatch(FAIRFACE_SUMMARY)] if not st.empty else st
    if summary.empty:
        sec.blocks.append(empty("fairface", cells))
        return sec
    data = select(rows, "fairface", pattern=FAIRFACE_SUMMARY)
    sec.blocks.append(Para(_FAIRFACE_ABOUT + " " + _fairface_k_note(data)))
    if (note := n_models_note(summary)) is not None:
        sec.blocks.append(note)
    kinds = (
        ("parity", "Demographic parity", "desired = each value's share of the whole set, as in Table 2 of the paper"),
        ("uniform", "Equal representation", "desired = 1 / number of values"),
    )
    for dataset in sorted(summary["dataset"].unique()):
        part = summary[summary["dataset"] == dataset]
        ks = sorted({int(m.rpartition("@")[2]) for m in part["metric"]})
        metrics = [f"{base}@{k}" for k in ks for base in ("max_skew", "min_skew", "ndkl")]
        for desired, title, about in kinds:
            subs = [s for s in part["subgroup"].unique() if split_fairface(s)[1] == desired and not split_fairface(s)[2]]
            order = sorted(subs, key=lambda s: (list(FAIRFACE_ATTRIBUTES).index(split_fairface(s)[0])
                                                if split_fairface(s)[0] in FAIRFACE_ATTRIBUTES else 99, s))
            if not order:
                continue
            labels = {s: FAIRFACE_ATTRIBUTES.get(split_fairface(s)[0], split_fairface(s)[0]) for s in order}
            table = significance_table(summary, "fairface", dataset, wide=True, metrics=metrics, subgroups=order,
                                       group_name="Attribute", labels=labels)
            sec.blocks.append(Table(table, f"**{title}** ({about}), `{dataset}`. {SIG_CAPTION}", group_col="Quantizer"))
    sec.blocks += figure(images, "fairface", "FairFace: change of skew per model and attribute",
                         "Each dot is one model's Δ; diamonds and bars the mean and 95% CI across models. "
                         "Skew closer to 0 is fairer: a rising MaxSkew or a falling MinSkew is a larger bias.")
    detail = st[st["metric"].str.fullmatch(FAIRFACE_DETAIL)]
    detail = detail[[bool(split_fairface(s)[2]) for s in detail["subgroup"]]]
    if not detail.empty:
        sec.blocks += _fairface_details(detail)
    return sec

