"""The study section of the report (Bouguerra et al., "Less Precise Can Be More Reliable"): its figures from
synthetic rows, the spurious-gap table against a hand computation, the section's absence without a W × A
quantizer, the grouping by training source, and the Quantizers table read defensively."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst

from qclip.metrics.spurious_gap import spurious_gap_summary
from qclip.models import training_source
from qclip.report import plots_study as P
from qclip.report import write_report
from qclip.report.document import build_document
from qclip.report.figures import write_figures
from qclip.report.sections_quantizers import quantizer_table
from qclip.report.sections_study import STUDY_TITLE, source_table, spurious_gap_table
from qclip.report.study import parse_quantizer, relative_ece, top1_by_bits
from qclip.report.tables import fmt_p
from qclip.results import ResultStore, normalize_rows
from qclip.stats import population_stats

MODELS = tuple(f"tiny:tiny-{c}" for c in "abcdef")  # sources: wit, laion, datacomp, wit, laion, datacomp
STUDY_QUANTIZERS = ("w8a8", "w6a8", "w4a8", "w8a8-gptq", "w4a8-gptq", "w4a8-lsq")
QUANTIZERS = (*STUDY_QUANTIZERS, "bnb-nf4")
ID, SHIFT, SPURIOUS = "synth-imagenet", "synth-imagenet-shift", "synth-spurious"
STUDY_FIGURES = ("study_bits", "study_ece_source", "study_dichotomy")
LEAN = {"a": -1.0, "d": -1.0, "b": 1.0, "e": 1.0, "c": 0.5, "f": 0.5}
"""The planted calibration change per model: WIT-like models improve, LAION-like ones degrade (Fig. 1)."""


def _row(model, q, bench, ds, metric, value, reference, n=400, subgroup=""):
    return dict(run_id="run-s", cell_id=f"{bench}[{model}-{q}-{ds}]", model=model, quantizer=q, benchmark=bench,
                dataset=ds, metric=metric, subgroup=subgroup, value=float(value), reference=float(reference),
                delta=float(value) - float(reference), n=n, status="passed", extra=None)


def fake_study_rows(seed=0, quantizers=QUANTIZERS):
    """Zero-shot top-1 (ID and shift), calibration and the spurious gap, as the cells record them; returns the
    rows and the split accuracies ``acc[(model, quantizer)] = (normal, counter)``."""
    rng = np.random.default_rng(seed)
    rows, acc = [], {}
    for m in MODELS:
        top1 = float(rng.uniform(0.75, 0.9))
        fn, fc = float(rng.uniform(0.9, 0.99)), float(rng.uniform(0.3, 0.5))
        acc[(m, "fp32")] = (fn, fc)
        ece_ref = float(rng.uniform(0.03, 0.08))
        lean = LEAN[m[-1]]
        for q in ("fp32", *quantizers):
            p = parse_quantizer(q)
            bits = p.weight_bits if p else 4
            drop = 0.0 if q == "fp32" else {8: 0.002, 6: 0.006, 4: 0.03}[bits] + float(rng.normal(0, 0.004))
            for ds, shift in ((ID, 0.0), (SHIFT, 0.1)):
                rows.append(_row(m, q, "zeroshot", ds, "top1", top1 - shift - drop, top1 - shift))
            rel = 0.0 if q == "fp32" else lean * 0.2 + float(rng.normal(0, 0.05))
            rows.append(_row(m, q, "calibration", ID, "ece", ece_ref * (1 + rel), ece_ref))
            rows.append(_row(m, q, "calibration", ID, "relative_ece_change", rel, 0.0))
            rows.append(_row(m, q, "calibration", ID, "accuracy", top1 - drop, top1))
            qn = fn if q == "fp32" else fn - float(rng.uniform(0, 0.02))
            qc = fc if q == "fp32" else fc - float(rng.uniform(-0.01, 0.06))
            acc[(m, q)] = (qn, qc)
            rows.append(_row(m, q, "robustness", SPURIOUS, "normal_accuracy", qn, fn, n=200))
            rows.append(_row(m, q, "robustness", SPURIOUS, "counter_accuracy", qc, fc, n=200))
            rows.append(_row(m, q, "robustness", SPURIOUS, "rsg", (qn - qc) / qn, (fn - fc) / fn))
            if q != "fp32":  # as bench/test_robustness.py records them
                s = spurious_gap_summary(fn, fc, qn, qc)
                rows.append(_row(m, q, "robustness", SPURIOUS, "delta_rsg", s["delta_rsg"], 0.0))
                rows.append(_row(m, q, "robustness", SPURIOUS, "vuln_add", s["vuln_add"], 0.0))
    return normalize_rows(pd.DataFrame(rows)), acc


@pytest.fixture(scope="module")
def study():
    rows, acc = fake_study_rows()
    return rows, acc, population_stats(rows)


def test_the_three_figures_are_drawn(study, tmp_path):
    rows, _, _ = study
    images, errors = write_figures(rows, tmp_path)
    assert not errors
    for role in STUDY_FIGURES:
        assert role in images, role
        assert (tmp_path / images[role]).read_bytes().startswith(b"\x89PNG")


def test_fig3_is_the_id_mean_per_method_and_bits(study):
    rows, _, _ = study
    data, fp32, ds = top1_by_bits(rows)
    assert ds == ID  # the in-distribution set, not the shift
    sel = rows[(rows["benchmark"] == "zeroshot") & (rows["dataset"] == ID)]
    assert fp32.mean() == pytest.approx(sel[sel["quantizer"] == "fp32"]["value"].mean(), abs=1e-12)
    assert set(data["series"]) == {"rtn", "gptq", "lsq"}
    rtn4 = data[(data["series"] == "rtn") & (data["weight_bits"] == 4)]["value"]
    assert rtn4.mean() == pytest.approx(sel[sel["quantizer"] == "w4a8"]["value"].mean(), abs=1e-12)
    assert sorted(data[data["series"] == "gptq"]["weight_bits"].unique()) == [4, 8]
    assert "bnb-nf4" not in set(data["quantizer"])


def _number(text: str) -> float:
    return float(re.match(r"^([+-]?\d+\.\d+(?:e[+-]\d+)?)", str(text))[1])


def test_spurious_table_equals_a_hand_computation(study):
    rows, acc, stats = study
    table = spurious_gap_table(stats, SPURIOUS).set_index("Quantizer")
    assert list(table.index[:len(STUDY_QUANTIZERS)]) == ["w8a8-gptq", "w4a8-gptq", "w4a8-lsq", "w8a8", "w6a8",
                                                        "w4a8"]  # by method, bits from 8 down; others last
    assert table.index[-1] == "bnb-nf4" and table.loc["bnb-nf4", "W"] == "—"
    for q in ("w4a8", "w4a8-gptq", "bnb-nf4"):
        d_rsg, vuln = [], []
        for m in MODELS:
            fn, fc = acc[(m, "fp32")]
            qn, qc = acc[(m, q)]
            d_rsg.append((qn - qc) / qn - (fn - fc) / fn)
            vuln.append(((fc - qc) / fc) - ((fn - qn) / fn))
        for col, values in (("ΔRSG", d_rsg), ("Vuln_add", vuln)):
            cell = str(table.loc[q, col])
            assert _number(cell) == pytest.approx(np.mean(values), abs=1e-4), (q, col, cell)
            p = sst.ttest_1samp(values, 0.0).pvalue
            mark = "**" if p < 0.05 else "*" if p < 0.10 else ""
            shown = fmt_p(p)
            assert f"p{'' if shown.startswith('<') else '='}{shown}{mark} " in cell, (q, col, cell, p)
        rsg = str(table.loc[q, "RSG fp32 → quantized"])
        ref = np.mean([(fn - fc) / fn for fn, fc in (acc[(m, "fp32")] for m in MODELS)])
        assert rsg.startswith(f"{ref:.4f} → ")
    assert table.loc["w4a8-lsq", "Method"] == "lsq" and table.loc["w6a8", "W"] == "6"


def test_the_section_is_absent_without_a_simulated_family_quantizer(tmp_path):
    rows, _ = fake_study_rows(quantizers=("bnb-nf4",))
    stats = population_stats(rows)
    images, _ = write_figures(rows, tmp_path)
    assert not set(STUDY_FIGURES) & set(images)
    assert P.bits_figure(rows) is None and P.ece_by_source_figure(rows) is None and P.dichotomy_figure(rows) is None
    doc = build_document("run-s", {}, rows, pd.DataFrame(), stats, None, images)
    titles = [s.title for s in doc]
    assert STUDY_TITLE not in titles and "Quantizers" in titles


def test_the_section_lands_in_markdown_and_html(study, tmp_path):
    rows, _, _ = study
    store = ResultStore(tmp_path / "results.sqlite")
    store.start_run("run-s", {})
    store.add_rows(rows.to_dict("records"))
    out = write_report(store, "run-s", out_root=tmp_path / "reports")
    md = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert f"## {STUDY_TITLE}" in md and STUDY_TITLE in html
    for name in ("study_bits.png", "study_ece_source.png", "study_dichotomy.png"):
        assert f"({name})" in md and (out / name).is_file()
    assert "| WIT-like | tiny:tiny-a, tiny:tiny-d | 2 |" in md
    assert "Spurious correlations: the relative spurious gap" in md and "| Quantizer | Method | W | A |" in md
    store.close()


def test_models_are_grouped_by_training_source(study):
    rows, _, _ = study
    cases = {"tiny:tiny-a": "WIT-like", "tiny:tiny-b": "LAION-like", "tiny:tiny-c": "DataComp-like",
             "open_clip:ViT-B-32-quickgelu/openai": "WIT", "open_clip:ViT-B-32/laion2b_s34b_b79k": "LAION",
             "open_clip:ViT-L-14/laion400m_e32": "LAION", "open_clip:ViT-B-16/datacomp_xl_s13b_b90k": "DataComp",
             "open_clip:ViT-H-14-quickgelu/dfn5b": "DFN", "open_clip:ViT-B-16-SigLIP/webli": "WebLI",
             "hf:openai/clip-vit-base-patch32": "WIT", "hf:laion/CLIP-ViT-B-32-laion2B-s34B-b79K": "LAION",
             "hf:laion/CLIP-ViT-B-16-DataComp.XL-s13B-b90K": "DataComp", "hf:google/siglip-base-patch16-224": "WebLI",
             "hf:kakaobrain/align-base": "COYO", "hf:someone/my-clip": "unknown",
             "random:open_clip/ViT-B-32": "unknown", "not a spec": "unknown"}
    for spec, source in cases.items():
        assert training_source(spec) == source, spec
    table = source_table(rows)
    assert table["Pre-training source"].tolist() == ["WIT-like", "LAION-like", "DataComp-like"]
    assert table["Models"].tolist() == ["tiny:tiny-a, tiny:tiny-d", "tiny:tiny-b, tiny:tiny-e",
                                        "tiny:tiny-c, tiny:tiny-f"]
    data, _ = relative_ece(rows)
    assert len(data) == len(MODELS) * len(QUANTIZERS)
    by_source = data.groupby("source")["rel"].mean()
    assert by_source["WIT-like"] < 0 < by_source["LAION-like"]  # the planted dichotomy


@pytest.mark.parametrize(("name", "expected"), [
    ("w4a8", ("simulated", 4, 8, "rtn", "both", "rtn")),
    ("w6a8-gptq", ("simulated", 6, 8, "gptq", "both", "gptq")),
    ("w4a8-smooth", ("simulated", 4, 8, "smooth", "both", "smooth")),
    ("w4a8-rot-gptq-vision", ("simulated", 4, 8, "rot-gptq", "vision", "rot-gptq (vision)")),
    ("w4a16", ("simulated", 4, 16, "rtn", "both", "rtn (A16)")),
    ("w4a8-lsq-distill", ("qat", 4, 8, "lsq-distill", "both", "lsq-distill")),
    ("w8a8-rot-lsq-text", ("qat", 8, 8, "rot-lsq", "text", "rot-lsq (text)")),
    ("bnb-nf4", None),
    ("fp32", None),
])
def test_quantizer_names_parse_into_bits_and_method(name, expected):
    p = parse_quantizer(name)
    got = None if p is None else (p.family, p.weight_bits, p.act_bits, p.method, p.scope, p.series)
    assert got == expected


def test_the_quantizer_table_reads_arithmetic_and_quantizes_defensively():
    described = {
        "fp32": {"family": "precision", "bits": 32, "scheme": "float32"},  # before the other change: no fields
        "w4a8": {"family": "simulated", "bits": 4, "arithmetic": "simulated", "quantizes": "weights+activations (both)"},
        "boom": None,
    }
    table = quantizer_table(["w4a8", "fp32", "boom", "unknown"], describe=lambda q: described.get(q, {}))
    table = table.set_index("Quantizer")
    assert list(table.index) == ["fp32", "boom", "unknown", "w4a8"]
    assert table.loc["w4a8", "Arithmetic"] == "simulated"
    assert table.loc["w4a8", "Quantizes"] == "weights+activations (both)"
    assert table.loc["fp32", "Arithmetic"] == "—" and table.loc["fp32", "Bits"] == "32"
    assert (table.loc["unknown"] == "—").all() and (table.loc["boom"] == "—").all()


def test_the_real_registry_describes_the_runs_quantizers():
    table = quantizer_table(["fp32", "w4a8", "not-registered"]).set_index("Quantizer")
    assert table.loc["w4a8", "Family"] == "simulated" and table.loc["w4a8", "Bits"] == "4"
    assert (table.loc["not-registered"] == "—").all()
    # before and after describe() gains its arithmetic field
    assert table.loc["w4a8", "Arithmetic"] in ("—", "simulated") and table.loc["fp32", "Arithmetic"] in ("—", "reference")


def test_the_figures_draw_with_two_models():
    rows, _ = fake_study_rows()
    rows = rows[rows["model"].isin(MODELS[:2])]
    for fig in (P.bits_figure(rows), P.ece_by_source_figure(rows), P.dichotomy_figure(rows)):
        assert fig is not None  # no CI band below 3 models, boxes instead of violins
