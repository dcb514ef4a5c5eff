"""The study section: "Reliability under weight × activation quantization (Bouguerra et al.)", the figures and
the spurious-gap table of "Less Precise Can Be More Reliable" on this run's population. Present only when
the run has a quantizer of the simulated weight × activation families (``w4a8``, ``w4a8-gptq``,
``w4a8-lsq``...)."""

from __future__ import annotations

import math

import pandas as pd

from qclip.report.blocks import Cell, Heading, Para, Section, Table
from qclip.report.common import SIG_CAPTION, figure
from qclip.report.data import FP32, quantizer_order, short_model, stats_lookup
from qclip.report.study import (
    parse_quantizer,
    simulated_quantizers,
    source_of,
    source_order,
    spurious_datasets,
)
from qclip.report.tables import change_cell, sig_cell

__all__ = ["STUDY_TITLE", "source_table", "spurious_gap_table", "study_section"]

STUDY_TITLE = "Reliability under weight × activation quantization (Bouguerra et al.)"

_ABOUT = (
    "The figures and the spurious-gap table of Bouguerra et al., \"Less Precise Can Be More Reliable\", on this "
    "run's models. Their claims: quantization improves the calibration of under-confident (WIT-trained) models "
    "and degrades that of over-confident (LAION-trained) ones, so the pre-training source decides the sign "
    "(Fig. 1, Fig. 5); simple methods collapse at 4 bits where advanced ones hold (Fig. 3); and quantization "
    "does not fix spurious correlations (the relative spurious gap). A tiny model's source is the synthetic "
    "world's stand-in for that mix (WIT-like, LAION-like, DataComp-like)."
)
_SPURIOUS_ABOUT = (
    "Normal split: each class on its common background (the groups a class carries most often over the whole "
    "set; Waterbirds-style sets: landbird/land and waterbird/water), counter split: the uncommon ones, as "
    "CounterAnimal divides its photos. RSG = (A_N − A_C) / A_N per model; ΔRSG = RSG(q) − RSG(fp32) (positive: "
    "quantization widens the gap); Vuln_add = δ_C − δ_N with δ = (A_fp32 − A_q) / A_fp32 (positive: quantization "
    "costs more on the counter split)."
)


def source_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per pre-training source: its models (the grouping of Fig. 1 and Fig. 5)."""
    models = sorted(rows["model"].unique()) if not rows.empty else []
    by_source: dict[str, list[str]] = {}
    for m in models:
        by_source.setdefault(source_of(m), []).append(short_model(m))
    order = source_order(by_source)
    return pd.DataFrame({"Pre-training source": order, "Models": [", ".join(by_source[s]) for s in order],
                         "n": [str(len(by_source[s])) for s in order]})


def _sort_key(q: str) -> tuple:
    """The study's quantizers first, by method, then bits from 8 down, activation bits and scope; the others
    after, by name."""
    p = parse_quantizer(q)
    if p is None:
        return (1, "", 0, 0, "", q)
    return (0, p.method, -p.weight_bits, -p.act_bits, p.scope, q)


def spurious_gap_table(stats: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """ΔRSG and Vuln_add per quantizer on ``dataset``: the population mean with the paired t-test p, its
    mark and 95% CI (the stats rows of the recorded ``delta_rsg`` / ``vuln_add``, tested against 0), and the
    mean RSG fp32 → quantized. Rows: method × bits of the study's families, then the other quantizers."""
    look = stats_lookup(stats)
    quantizers = [q for q in quantizer_order(stats["quantizer"]) if q != FP32] if not stats.empty else []
    out = []
    for q in sorted(quantizers, key=_sort_key):
        d = look.get((q, "robustness", dataset, "delta_rsg", ""))
        v = look.get((q, "robustness", dataset, "vuln_add", ""))
        if d is None and v is None:
            continue
        rsg = look.get((q, "robustness", dataset, "rsg", ""))
        p = parse_quantizer(q)
        out.append({
            "Quantizer": q,
            "Method": p.method if p else "(other)",
            "W": str(p.weight_bits) if p else "—",
            "A": str(p.act_bits) if p else "—",
            "Scope": p.scope if p else "—",
            "n": str(int((d or v).n)),
            "RSG fp32 → quantized": change_cell(rsg.mean_ref, rsg.mean_q) if rsg is not None else Cell("—"),
            "ΔRSG": sig_cell(d) if d is not None else Cell("—"),
            "Vuln_add": sig_cell(v) if v is not None else Cell("—"),
        })
    table = pd.DataFrame(out)
    if not table.empty and (table[["W", "A", "Scope"]] == "—").all().all():
        table = table.drop(columns=["Method", "W", "A", "Scope"])
    return table


def _headline(stats: pd.DataFrame, dataset: str) -> str:
    """One sentence: how many quantizers widened the gap significantly (p < .05) and how many narrowed it."""
    sel = stats[(stats["benchmark"] == "robustness") & (stats["dataset"] == dataset) & (stats["metric"] == "delta_rsg")
                & (stats["subgroup"] == "")]
    if sel.empty:
        return ""
    sig = sel[sel["mark"] == "**"]
    up = int((sig["mean_diff"] > 0).sum())
    down = int((sig["mean_diff"] < 0).sum())
    mean = float(sel["mean_diff"].mean())
    mean_text = f", mean ΔRSG {mean:+.4f}" if math.isfinite(mean) else ""
    return f"{len(sel)} quantizers{mean_text}: {up} widen the gap and {down} narrow it at p < .05."


def study_section(rows: pd.DataFrame, stats: pd.DataFrame, images: dict, cells=None) -> Section | None:
    """The section, or None when no quantizer of the study's families ran."""
    sim = simulated_quantizers(rows)
    if not sim:
        return None
    sec = Section(STUDY_TITLE, [Para(_ABOUT)])
    sec.blocks.append(Table(source_table(rows), "The models by pre-training source (qclip.models.training_source)."))
    sec.blocks += figure(images, "study_bits", "ID zero-shot top-1 against the weight bit-width per method",
                         "Fig. 3 of the study: mean zero-shot top-1 over the models on the in-distribution set per "
                         "method, with its 95% CI (t, n ≥ 3) as a band; the dashed line is the fp32 mean.")
    sec.blocks += figure(images, "study_ece_source", "Relative ECE change by pre-training source",
                         "Fig. 5 of the study: one point per model × quantizer, coloured by quantizer; violin where a "
                         "source has at least 5 distinct values, else a box; × marks an accuracy drop under 2 points. "
                         "With 2 models per source, a violin per (source, quantizer) would draw 2 points, so the "
                         "quantizers are pooled per source and told apart by colour.")
    sec.blocks += figure(images, "study_dichotomy", "Accuracy change against relative ECE change",
                         "Fig. 1 of the study: the dichotomy. Right of 0: the quantized model is more accurate; below "
                         "0: better calibrated. Circles: W × A quantizers; squares: the others; the large cross is "
                         "each source's mean.")
    datasets = spurious_datasets(rows)
    sec.blocks.append(Heading("Spurious correlations: the relative spurious gap"))
    if not datasets or stats is None or stats.empty:
        sec.blocks.append(Para("No cell of this run recorded the spurious gap (a `spurious` or `counteranimal` "
                               "dataset in the robustness family)."))
        return sec
    sec.blocks.append(Para(_SPURIOUS_ABOUT))
    for ds in datasets:
        table = spurious_gap_table(stats, ds)
        if table.empty:
            continue
        line = _headline(stats, ds)
        sec.blocks.append(Table(table, f"`{ds}`: means over the models. {line} {SIG_CAPTION}".replace("  ", " "),
                                group_col="Method" if "Method" in table else None))
    return sec
