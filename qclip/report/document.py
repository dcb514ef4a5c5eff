"""The report as data: sections of paragraphs, bullet lists, tables, figures and details.

:func:`build_document` decides *what* the report says; :mod:`.markdown` and
:mod:`.html` only decide how it looks, so both formats always carry the same
content. A section with no rows says so in one line rather than vanish. The
sections of each family live in ``sections_*.py``.
"""

from __future__ import annotations

import json

import pandas as pd

from qclip.benchmarks import FAMILIES
from qclip.report import tables as T
from qclip.report.blocks import Bullets, Cell, Details, Heading, Image, Para, Section, Table
from qclip.report.common import SIG_CAPTION
from qclip.report.data import usable
from qclip.report.sections_data import META_KEY as DATA_META_KEY
from qclip.report.sections_data import data_section
from qclip.report.sections_fairness import facet_section, fairface_section
from qclip.report.sections_overview import cost_section, glance_section
from qclip.report.sections_quantizers import quantizers_section
from qclip.report.sections_reliability import calibration_section, ood_section
from qclip.report.sections_robustness import robustness_section, spectral_section
from qclip.report.sections_study import study_section

__all__ = [
    "Bullets",
    "Cell",
    "Details",
    "Heading",
    "Image",
    "Para",
    "SIG_CAPTION",
    "Section",
    "Table",
    "build_document",
]


CONVENTIONS = [
    "Δ = quantized − fp32 of the same model, dataset, metric and group; positive means the quantized "
    "model scores higher, which is better for accuracy-like metrics and worse for errors (ECE, NLL, "
    "Brier, FPR).",
    "Disparity and skew are signed; 0 is parity. A gate treats a larger |value| as worse.",
    "OOD detection: ID samples are the positive class (MCM's convention; OpenOOD makes OOD positive, "
    "which swaps AUPR-In and AUPR-Out).",
    "Population statistics: one paired t-test (scipy.stats.ttest_rel) per quantizer × benchmark × "
    "dataset × metric × group across the models; fewer than 3 models give no test (\"n too small\"). "
    "Marks use the unadjusted p, as Slyman et al. do; with many tests, expect some marks by chance and "
    "read p_holm / p_bh in `stats.csv`.",
    "Relative robustness change: δ = (A_fp − A_q) / A_fp; relative ECE change: (ECE_q − ECE_fp) / ECE_fp.",
    "Rows of skipped or errored cells are left out of every table, figure and test.",
]

STATISTICS = [
    "Paired t-test: per finding, the n models' differences Δ = quantized − fp32 are tested against a mean of "
    "0 (two-sided, scipy.stats.ttest_rel), with the 95% CI of the mean Δ. A mark says the mean moved; no mark "
    "says only that these n models could not show it.",
    "Equivalence (TOST): two one-sided paired t-tests ask whether the mean Δ lies inside ±m, a margin per "
    "metric family (qclip/expect/equivalence.yaml, --qclip-equivalence); p_tost < .05 exactly when the 90% CI "
    "of the mean Δ (ci90_low, ci90_high in stats.csv) lies inside (−m, m). It is the test that can say "
    "\"no change worth mentioning\", which an insignificant t-test cannot.",
    "Verdict: different when the t-test has p < .05, else equivalent ±m when TOST has p < .05, else "
    "inconclusive. Inconclusive means the data show neither a change nor its absence within the margin.",
    "MDE (minimum detectable effect): the smallest true mean Δ the paired t-test would find with 80% power at "
    "this n and this spread of Δ (statsmodels TTestPower). When it exceeds the margin the verdict says "
    "\"too few models\": the population cannot see an effect of the margin's size.",
    "Per-model CI: each FACET cell resamples its persons with replacement (the same ones for the fp32 and the "
    "quantized model, 200 seeded resamples) and recomputes both models' disparities, so each model's Δ gets a "
    "95% percentile interval, drawn as a thin bar through its dot in the forest plot. It is the evaluation set's "
    "sampling noise for that one model, which the population test's CI, across models, does not show.",
    "Top-1 flips: the share of images whose zero-shot top-1 prediction differs between the fp32 and the "
    "quantized model, split into right→wrong and wrong→right (their difference is the top-1 Δ). A top-1 Δ near "
    "0 with many flips means the quantizer changed many answers whose changes cancel.",
    "KL divergence: the mean over images of KL(p_fp32 ‖ p_quantized) of the softmax over the classes, in nats. "
    "It sees changes of confidence that leave the top-1 prediction as it was.",
    "Embedding cosine: the mean cosine similarity of each image's fp32 and quantized embeddings. It measures how "
    "far the quantizer moves the representation itself, before any classifier reads it.",
]
"""The report's statistics section: each statistic in two sentences (docs/report.md, "The statistics")."""

_KEY_META = ("git_commit", "device", "device_name", "matmul_precision", "started", "finished", "qclip_version",
             "provenance.cpu_capability", "provenance.tiny_mode", "provenance.data.world_digest")


def _flat_meta(meta: dict) -> dict:
    flat = {}

    def walk(prefix, obj):
        if isinstance(obj, dict) and obj:
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = obj if isinstance(obj, str) else json.dumps(obj)

    walk("", meta)
    return flat


def _weights_blocks(meta: dict) -> list:
    """The weights each model of the run had (checksum, tiny training mode, where trained): what a baseline
    must match (see qclip.expect.provenance)."""
    models = (meta.get("provenance") or {}).get("models") or {}
    if not models:
        return []
    table = pd.DataFrame({"Model": list(models),
                          "Weights (sha256 or digest)": [str(p.get("weights", "")) for p in models.values()],
                          "Tiny mode": [str(p.get("mode", "")) for p in models.values()],
                          "Trained where torch reports": [str(p.get("trained_cpu_capability", ""))
                                                          for p in models.values()]})
    return [Para("Weights of the run's models (a baseline with other weights is another population):"), Table(table)]


def _run_sections(run_id: str, meta: dict, rows: pd.DataFrame) -> tuple[Section, Section]:
    """The short run table for the top and the full metadata for the end."""
    flat = {"run id": run_id, **_flat_meta({k: v for k, v in meta.items() if k != DATA_META_KEY})}
    key = {"run id": run_id} | {k: flat[k] for k in _KEY_META if k in flat}
    for col in ("model", "quantizer", "benchmark", "dataset"):
        values = sorted(rows[col].unique()) if not rows.empty else []
        key[f"{col}s"] = flat[f"{col}s"] = f"{len(values)}: {', '.join(values)}" if values else "none"
    key["result rows"] = flat["result rows"] = str(len(rows))
    run = Section("Run", [Table(pd.DataFrame({"Key": list(key), "Value": [str(v) for v in key.values()]})),
                          *_weights_blocks(meta),
                          Para("All run metadata (arguments, libraries, cache counters, thresholds) is at the end.")])
    everything = Section("Run metadata", [
        Details(f"All {len(flat)} keys", [Table(pd.DataFrame({"Key": list(flat), "Value": [str(v) for v in flat.values()]}))]),
    ])
    return run, everything


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


def _gates_section(gates, meta: dict | None = None) -> Section:
    sec = Section("Gates")
    if gates is None:
        sec.blocks.append(Para("No gates were configured for this run."))
    elif not gates:
        sec.blocks.append(Para("Gates ran and found no regression."))
    else:
        sec.blocks.append(Bullets(_gate_lines(gates)))
    baseline = (meta or {}).get("baseline") or {}
    if baseline.get("differences"):
        sec.blocks.append(Para(f"Warning: the baseline `{baseline.get('ref', '')}` differs from this run in what "
                               "produced its numbers, so the comparison mixes populations:"))
        sec.blocks.append(Bullets([str(d) for d in baseline["differences"]]))
    return sec


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
    skipped = cells[cells["status"] == "skipped"]
    if not skipped.empty:
        reasons = skipped["message"].fillna("").map(lambda m: str(m).strip().splitlines()[0][:200] if m else "")
        counts = reasons.value_counts()
        sec.blocks.append(Details(f"Skipped cells: {len(skipped)} ({len(counts)} distinct reasons)",
                                  [Bullets([f"{n} × {reason or '(no reason given)'}" for reason, n in counts.items()])]))
    return sec


def _accuracy_section(rows: pd.DataFrame, images: dict) -> Section:
    acc = Section("Accuracy (zero-shot top-1, retrieval R@1)")
    if "accuracy" in images:
        acc.blocks.append(Image(images["accuracy"], "Zero-shot top-1 and retrieval R@1 per model and quantizer"))
    table = T.accuracy_table(rows)
    if table.empty:
        acc.blocks.append(Para("No zero-shot top-1 or retrieval R@1 rows in this run."))
    else:
        acc.blocks.append(Table(table, "Each cell: value (Δ to fp32 of the same model).", group_col="Model"))
    return acc


def _accuracy(ok, stats, images, cells) -> Section:
    return _accuracy_section(ok, images)


def _cost(ok, stats, images, cells) -> Section:
    return cost_section(ok, cells)


#: the report section of every family of qclip.benchmarks.FAMILIES: builder(rows, stats, images, cells)
SECTION_BUILDERS = {
    "zeroshot": _accuracy,
    "retrieval": _accuracy,
    "facet": facet_section,
    "fairface": fairface_section,
    "calibration": calibration_section,
    "ood": ood_section,
    "spectral": spectral_section,
    "robustness": robustness_section,
    "throughput": _cost,
}


def _other_section(stats: pd.DataFrame, benchmark: str) -> Section:
    sec = Section(f"Other: {benchmark}")
    sel = stats[stats["benchmark"] == benchmark]
    for dataset in sorted(sel["dataset"].unique()):
        sec.blocks.append(Table(T.significance_table(stats, benchmark, dataset),
                                f"`{benchmark}` on `{dataset}`. {SIG_CAPTION}", group_col="Quantizer"))
    return sec


def _statistics_section(stats: pd.DataFrame) -> Section:
    """What each statistic of the tables is, the verdicts counted, and the margins the run used."""
    sec = Section("Statistics", [Bullets(list(STATISTICS))])
    if stats is None or stats.empty or "verdict" not in stats:
        return sec
    counts = stats["verdict"].replace("", "n too small").value_counts()
    sec.blocks.append(Para("Verdicts of this run's findings: " + ", ".join(
        f"{int(counts[v])} {v}" for v in ("different", "equivalent", "inconclusive", "n too small") if v in counts)
        + "."))
    weak = stats[(stats["verdict"] == "inconclusive") & (stats["mde"] > stats["margin"])]
    if not weak.empty:
        sec.blocks.append(Para(f"**Too few models:** for {len(weak)} inconclusive finding(s) the minimum detectable Δ "
                               "exceeds the margin, so this population could not have shown an effect of the "
                               "margin's size either way."))
    margins = (stats.dropna(subset=["margin"]).groupby(["benchmark", "metric"], sort=True)["margin"].first()
               .reset_index())
    if not margins.empty:
        table = pd.DataFrame({"Benchmark": margins["benchmark"], "Metric": margins["metric"],
                              "Margin ±m": [f"{m:g}" for m in margins["margin"]]})
        sec.blocks.append(Details(f"Margins used ({len(table)} metrics)", [Table(table)]))
    return sec


def build_document(
    run_id: str,
    meta: dict,
    rows: pd.DataFrame,
    cells: pd.DataFrame,
    stats: pd.DataFrame,
    gates,
    images: dict[str, str],
    figure_errors: dict[str, str] | None = None,
) -> list[Section]:
    """The sections of the report. ``images`` maps a figure's role (see
    :data:`qclip.report.figures.FIGURES`) to the PNG
    file name written beside the report."""
    ok = usable(rows)
    run, everything = _run_sections(run_id, meta, rows)
    doc = [
        run,
        glance_section(ok, stats),
        _gates_section(gates, meta),
        _cells_section(cells),
        data_section(meta),
        quantizers_section(ok),
    ]
    built: list = []
    for name in FAMILIES:  # the families' sections, in the declared order; a shared builder runs once
        builder = SECTION_BUILDERS[name]
        if builder not in built:
            built.append(builder)
            doc.append(builder(ok, stats, images, cells))
    if (study := study_section(ok, stats, images, cells)) is not None:  # only with a W × A quantizer
        doc.append(study)
    others = sorted(set(stats["benchmark"]) - set(FAMILIES)) if not stats.empty else []
    doc += [_other_section(stats, b) for b in others]

    dist = Section("Δ distributions across models")
    if "delta" in images:
        dist.blocks.append(Image(images["delta"], "Δ per metric across models, every quantizer",
                                 "Every headline metric of the run (per-class and per-value details left out): one "
                                 "dot per model, the diamond at the mean; units differ between panels."))
    else:
        dist.blocks.append(Para("No quantized rows with a finite Δ in this run."))
    doc.append(dist)

    doc.append(_statistics_section(stats))
    notes = list(CONVENTIONS)
    notes += [f"Figure `{role}` could not be drawn: {err}" for role, err in (figure_errors or {}).items()]
    doc.append(Section("Conventions", [Bullets(notes)]))
    doc.append(everything)
    return doc
