"""The report as data: sections of paragraphs, bullet lists, tables and images.

:func:`build_document` decides *what* the report says; :mod:`.markdown` and
:mod:`.html` only decide how it looks, so both formats always carry the same
content. A section with no rows says so in one line rather than vanish.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from qclip.report import tables as T

__all__ = ["Bullets", "Image", "Para", "Section", "Table", "build_document"]


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    df: pd.DataFrame
    caption: str = ""


@dataclass
class Image:
    filename: str
    alt: str


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)


SIG_CAPTION = (
    "Each cell: mean Δ (quantized − fp32) across the n models, p of the paired t-test "
    "(two-sided, unadjusted as in the paper; Holm and Benjamini–Hochberg adjusted p in "
    "`stats.csv`), 95% CI of the mean Δ. * p < .10, ** p < .05."
)

# (benchmark, title, what it measures); the order of the report.
SIG_SECTIONS = (
    (
        "facet",
        "Fairness: FACET disparity (Table 1 layout)",
        "Disparity = recall@K(group 1) − recall@K(group 2) per person class; min and max over classes. "
        "Groups: masculine vs feminine (MF), lighter vs darker skin (LD), middle vs young (MY), "
        "middle vs older (MO).",
    ),
    (
        "fairface",
        "Fairness: FairFace retrieval skew",
        "Skew_a@k = ln(p_a / desired_a) over the top-k retrieved faces; MaxSkew@k / MinSkew@k are the "
        "most / least represented attribute value, averaged over prompts.",
    ),
    ("calibration", "Calibration", "ECE over 15 equal-width bins, MCE, RMS calibration error, NLL, Brier."),
    (
        "ood",
        "OOD detection",
        "ID is the positive class (MCM convention). FPR@95: share of OOD samples "
        "scored at or above the threshold that keeps 95% of ID samples.",
    ),
    ("robustness", "Robustness", "Accuracy under covariate shift, corruptions and spurious correlations."),
)
_NOT_STATS = ("zeroshot", "retrieval", "throughput")

CONVENTIONS = [
    "Δ = quantized − fp32 of the same model, dataset, metric and group; positive means the quantized "
    "model scores higher, which is better for accuracy-like metrics and worse for errors (ECE, NLL, "
    "Brier, FPR).",
    "Disparity and skew are signed; 0 is parity. A gate treats a larger |value| as worse.",
    "OOD detection: ID samples are the positive class (MCM's convention; OpenOOD makes OOD positive, "
    "which swaps AUPR-In and AUPR-Out).",
    "Population statistics: one paired t-test (scipy.stats.ttest_rel) per quantizer × benchmark × "
    "dataset × metric × group across the models; fewer than 3 models give no test. Marks use the "
    "unadjusted p, as Slyman et al. do; with many tests, expect some marks by chance and read "
    "p_holm / p_bh in `stats.csv`.",
    "Relative robustness change: δ = (A_fp − A_q) / A_fp.",
]


def _meta_table(run_id: str, meta: dict, rows: pd.DataFrame) -> pd.DataFrame:
    flat = {"run id": run_id}

    def walk(prefix, obj):
        if isinstance(obj, dict) and obj:
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = obj if isinstance(obj, str) else json.dumps(obj)

    walk("", meta)
    for col in ("model", "quantizer", "benchmark", "dataset"):
        values = sorted(rows[col].unique()) if not rows.empty else []
        flat[f"{col}s"] = f"{len(values)}: {', '.join(values)}" if values else "none"
    flat["result rows"] = str(len(rows))
    return pd.DataFrame({"Key": list(flat), "Value": [str(v) for v in flat.values()]})


def _gate_lines(gates) -> list[str]:
    lines = []
    for g in gates:
        if isinstance(g, dict):
            name, passed, details = g.get("name", "gate"), bool(g.get("passed")), g.get("details", [])
        elif hasattr(g, "passed"):
            name, passed, details = g.name, bool(g.passed), list(getattr(g, "details", []))
        else:  # a Regression or any failure object: its text is the detail
            name, passed, details = (
                f"compare {getattr(getattr(g, 'check', None), 'text', 'gate')}",
                False,
                [str(g)],
            )
        lines.append(f"**{'PASS' if passed else 'FAIL'}** {name}" + "".join(f"; {d}" for d in details[:10]))
    return lines


def _cells_section(cells: pd.DataFrame) -> Section:
    sec = Section("Cells")
    if cells.empty:
        sec.blocks.append(Para("No cell status rows were recorded for this run."))
        return sec
    sec.blocks.append(Table(T.cell_status_table(cells)))
    bad = cells[cells["status"].isin(["failed", "error"])]
    if not bad.empty:
        items = [
            f"`{r.cell_id}` {r.status}: {str(r.message).splitlines()[0][:200] if r.message else ''}"
            for r in bad.head(25).itertuples()
        ]
        if len(bad) > 25:
            items.append(f"… and {len(bad) - 25} more (see the cells table of the store)")
        sec.blocks.append(Bullets(items))
    return sec


def _sig_section(stats: pd.DataFrame, benchmark: str, title: str, about: str) -> Section:
    sec = Section(title, [Para(about)] if about else [])
    sel = stats[stats["benchmark"] == benchmark] if not stats.empty else stats
    if sel.empty:
        sec.blocks = [Para(f"No `{benchmark}` rows with an fp32 reference in this run.")]
        return sec
    for dataset in sorted(sel["dataset"].unique()):
        sec.blocks.append(
            Table(
                T.significance_table(stats, benchmark, dataset),
                f"`{benchmark}` on `{dataset}`. {SIG_CAPTION}",
            )
        )
    return sec


def build_document(
    run_id: str,
    meta: dict,
    rows: pd.DataFrame,
    cells: pd.DataFrame,
    stats: pd.DataFrame,
    gates,
    images: dict[str, str],
) -> list[Section]:
    """The sections of the report. ``images`` maps a role (``'accuracy'`` or
    ``'delta:<quantizer>'``) to the PNG file name written beside the report."""
    doc = [Section("Run", [Table(_meta_table(run_id, meta, rows))]), _cells_section(cells)]

    gate_sec = Section("Gates")
    if gates is None:
        gate_sec.blocks.append(Para("No gates were configured for this run."))
    elif not gates:
        gate_sec.blocks.append(Para("Gates ran and found no regression."))
    else:
        gate_sec.blocks.append(Bullets(_gate_lines(gates)))
    doc.append(gate_sec)

    acc = Section("Accuracy (zero-shot top-1, retrieval R@1)")
    if "accuracy" in images:
        acc.blocks.append(
            Image(images["accuracy"], "Zero-shot top-1 and retrieval R@1 per model and quantizer")
        )
    table = T.accuracy_table(rows)
    if table.empty:
        acc.blocks.append(Para("No zero-shot top-1 or retrieval R@1 rows in this run."))
    else:
        acc.blocks.append(Table(table, "Each cell: value (Δ to fp32 of the same model)."))
    doc.append(acc)

    for benchmark, title, about in SIG_SECTIONS:
        doc.append(_sig_section(stats, benchmark, title, about))
    known = {b for b, _, _ in SIG_SECTIONS} | set(_NOT_STATS)
    others = sorted(set(stats["benchmark"]) - known) if not stats.empty else []
    for benchmark in others:
        doc.append(_sig_section(stats, benchmark, f"Other: {benchmark}", ""))

    cost = Section("Cost (throughput, memory)")
    table = T.cost_table(rows)
    cost.blocks.append(
        Table(table, "Each cell: value (× the fp32 value of the same model).")
        if not table.empty
        else Para("No `throughput` rows in this run.")
    )
    doc.append(cost)

    dist = Section("Δ distributions across models")
    figs = sorted(k for k in images if k.startswith("delta:"))
    dist.blocks.extend(
        Image(images[k], f"Δ per metric across models, {k.removeprefix('delta:')}") for k in figs
    )
    if not figs:
        dist.blocks.append(Para("No quantized rows with a finite Δ in this run."))
    doc.append(dist)

    doc.append(Section("Conventions", [Bullets(CONVENTIONS)]))
    return doc
