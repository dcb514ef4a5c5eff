"""qclip.report: a fake run of every benchmark family through write_report; files, figures,
self-contained HTML, the Table-1 layout and the sections of the fairness and reliability studies."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst

from qclip.expect.gate import GateOutcome
from qclip.metrics.calibration import ece, reliability_diagram
from qclip.report import REPORT_FILES, terminal_summary, write_report
from qclip.report.document import build_document
from qclip.report.figures import FIGURES as FIGURE_BUILDERS
from qclip.report.markdown import render_markdown
from qclip.report.plots import quantizer_colors
from qclip.report.tables import FACET_GROUPS as GROUP_LABELS
from qclip.report.tables import fmt_p, metric_label, significance_table
from qclip.results import ROW_COLUMNS, ResultStore, normalize_rows, read_rows
from qclip.stats import STATS_COLUMNS, population_stats

MODELS = ("open_clip:ViT-B-32/laion2b", "open_clip:ViT-B-16/openai", "tiny:a", "tiny:b", "tiny:c")
QUANTIZERS = ("bnb-nf4", "torch-int8")
FACET_GROUPS = ("gender", "skin_tone", "age_young", "age_older")
FACET_METRICS = ("min_disparity@1", "max_disparity@1", "min_disparity@5", "max_disparity@5")
FACET_CLASSES = ("doctor", "nurse", "guitarist", "farmer", "skateboarder", "judge")
FAIRFACE_VALUES = {
    "race": ("White", "Black", "East Asian", "Indian"),
    "gender": ("Male", "Female"),
    "age_bin": ("younger", "middle", "older"),
}
OOD_SETS = ("synthood", "synthtextures")
CORRUPTIONS = ("gaussian_noise", "gaussian_blur")
# Planted effects: a clear shift (p < .05) and a borderline one (.05 <= p < .10).
STRONG = ("bnb-nf4", "max_disparity@1", "skin_tone")
BORDERLINE = ("torch-int8", "min_disparity@1", "gender")
BORDERLINE_DELTAS = (0.01, 0.02, -0.002, 0.015, 0.007)
FIGURES = (
    "accuracy.png",
    "calibration_ece.png",
    "delta.png",
    "facet.png",
    "fairface.png",
    "ood.png",
    "reliability_diagrams.png",
    "robustness.png",
    "spectral.png",
)


class _Run:
    """Rows of one fake run: every model's fp32 row and its quantized rows share one reference."""

    def __init__(self, run_id: str, seed: int):
        self.run_id, self.rng, self.rows = run_id, np.random.default_rng(seed), []
        self.seed = seed

    def add(self, mi, bench, ds, metric, sub, ref, deltas, extra=None, extras=None, n=100):
        for q in ("fp32", *QUANTIZERS):
            d = 0.0 if q == "fp32" else float(deltas[q])
            self.rows.append(
                dict(
                    run_id=self.run_id,
                    cell_id=f"test_{bench}[{MODELS[mi]}-{q}-{ds}]",
                    model=MODELS[mi],
                    quantizer=q,
                    benchmark=bench,
                    dataset=ds,
                    metric=metric,
                    subgroup=sub,
                    value=ref + d,
                    reference=ref,
                    delta=d,
                    n=n,
                    status="passed",
                    extra=(extras or {}).get(q, extra),
                )
            )

    def noise(self, scale, **planted):
        return {q: float(self.rng.normal(0, scale)) + planted.get(q.replace("-", "_"), 0.0) for q in QUANTIZERS}


def _facet(run, mi):
    for g in FACET_GROUPS:
        for m in FACET_METRICS:
            d = run.noise(0.01)
            if (STRONG[1], STRONG[2]) == (m, g):
                d[STRONG[0]] += 0.05
            if (BORDERLINE[1], BORDERLINE[2]) == (m, g):
                d[BORDERLINE[0]] = BORDERLINE_DELTAS[mi]
            ref = float(run.rng.uniform(-0.4, -0.05) if m.startswith("min") else run.rng.uniform(0.05, 0.5))
            run.add(mi, "facet", "synthfacet", m, g, ref, d, extra={"n_classes": len(FACET_CLASSES)})
        for k in (1, 5):
            for c in FACET_CLASSES:
                run.add(mi, "facet", "synthfacet", f"disparity@{k}", f"{g}/{c}", float(run.rng.uniform(-0.3, 0.3)),
                        run.noise(0.03))


def _fairface(run, mi):
    for attr, values in FAIRFACE_VALUES.items():
        for sub in (attr, f"{attr}/uniform"):
            extra = {"k": 1000, "k_capped": False, "n_prompts": 240}
            run.add(mi, "fairface", "synthfairface", "max_skew@1000", sub, float(run.rng.uniform(0.1, 0.6)),
                    run.noise(0.02), extra=extra)
            run.add(mi, "fairface", "synthfairface", "min_skew@1000", sub, float(run.rng.uniform(-0.8, -0.1)),
                    run.noise(0.02), extra=extra)
            run.add(mi, "fairface", "synthfairface", "ndkl@1000", sub, float(run.rng.uniform(0.01, 0.2)),
                    run.noise(0.005), extra=extra)
            for v in values:
                run.add(mi, "fairface", "synthfairface", "skew@1000", f"{sub}/{v}",
                        float(run.rng.uniform(-0.5, 0.5)), run.noise(0.03))


def _calibration_outputs(rng, n, acc, shift):
    conf = np.clip(rng.beta(5, 3, n) + shift, 0.02, 1.0)
    correct = rng.uniform(size=n) < acc
    return conf, correct


def _calibration(run, mi):
    rng = run.rng
    acc = float(rng.uniform(0.4, 0.8))
    shift = float(rng.uniform(-0.25, 0.15))  # negative: under-confident at fp32
    per_q = {"fp32": (acc, shift)}
    for q in QUANTIZERS:
        per_q[q] = (acc + float(rng.normal(-0.01, 0.01)), shift + float(rng.normal(0, 0.05)))
    metrics = {}
    extras = {}
    for q, (a, s) in per_q.items():
        conf, correct = _calibration_outputs(np.random.default_rng(1000 * mi + len(q)), 600, a, s)
        diagram = reliability_diagram(conf, correct)
        e = ece(conf, correct)
        extras[q] = {"reliability": diagram.to_dict(orient="list")}
        metrics[q] = {
            "ece": e, "adaptive_ece": e * 0.95, "mce": min(1.0, 2.5 * e), "rms_ce": e * 1.2,
            "nll": 1.2 + e, "brier": 0.4 + e / 2, "accuracy": float(correct.mean()),
            "mean_confidence": float(conf.mean()), "overconfidence": float(conf.mean() - correct.mean()),
            "temperature": float(np.exp(-4 * (conf.mean() - correct.mean()))), "ece_heldout": e * 1.05,
            "ece_temp_scaled": e * 0.4, "ece_logit_tuned": e * 0.5,
        }
    for metric in metrics["fp32"]:
        ref = metrics["fp32"][metric]
        run.add(mi, "calibration", "synthimagenet", metric, "", ref,
                {q: metrics[q][metric] - ref for q in QUANTIZERS}, extras=extras if metric == "ece" else None)
    ref = metrics["fp32"]["ece"]
    for q in QUANTIZERS:  # value = (ECE_q − ECE_fp)/ECE_fp, reference 0 (the cells' convention)
        rel = (metrics[q]["ece"] - ref) / ref
        run.rows.append({**run.rows[-1], "cell_id": f"test_calibration[{MODELS[mi]}-{q}-synthimagenet]",
                         "quantizer": q, "metric": "relative_ece_change", "value": rel, "reference": 0.0,
                         "delta": rel, "extra": None})


def _ood(run, mi):
    for ood_set in OOD_SETS:
        for score in ("mcm", "msp", "max_logit", "energy"):
            run.add(mi, "ood", "synthimagenet", f"{score}_auroc", ood_set, float(run.rng.uniform(0.6, 0.9)),
                    run.noise(0.02, bnb_nf4=0.02))
            run.add(mi, "ood", "synthimagenet", f"{score}_fpr95", ood_set, float(run.rng.uniform(0.3, 0.8)),
                    run.noise(0.03, bnb_nf4=-0.03))
            for m in ("aupr_in", "aupr_out"):
                run.add(mi, "ood", "synthimagenet", f"{score}_{m}", ood_set, float(run.rng.uniform(0.5, 0.9)),
                        run.noise(0.02))


def _spectral(run, mi):
    r = 24
    energy = np.sort(run.rng.dirichlet(np.linspace(8, 0.2, r)))[::-1]
    extras = {}
    for q, scale in (("fp32", 0.0), ("bnb-nf4", 1e-3), ("torch-int8", 1e-4)):
        nsr = scale * np.geomspace(1, 300, r) * run.rng.uniform(0.7, 1.3, r)
        extras[q] = {"energy": energy.tolist(), "nsr_per_rank": nsr.tolist(), "bands": [[0, 0.1], [0.1, 0.5], [0.5, 1]]}
    erank = float(run.rng.uniform(8, 14))
    run.add(mi, "spectral", "synthimagenet", "effective_rank", "", erank, run.noise(0.1, bnb_nf4=0.3))
    run.add(mi, "spectral", "synthimagenet", "nsr_total", "", 0.0, run.noise(0.0, bnb_nf4=0.004, torch_int8=4e-4),
            extras=extras)
    for b, scale in enumerate((1e-4, 1e-3, 1e-2)):
        run.add(mi, "spectral", "synthimagenet", "band_nsr", f"band{b}", 0.0,
                {q: abs(run.rng.normal(scale, scale / 3)) * (10 if q == "bnb-nf4" else 1) for q in QUANTIZERS})
        run.add(mi, "spectral", "synthimagenet", "band_top1", f"band{b}", 0.7 / (b + 1), run.noise(0.01))
        for q in QUANTIZERS:  # SQNR has no fp32 value: the cells record it with a NaN reference
            run.rows.append({**run.rows[-1], "cell_id": f"test_spectral[{MODELS[mi]}-{q}-synthimagenet]",
                             "quantizer": q, "metric": "band_sqnr_db", "subgroup": f"band{b}",
                             "value": 40.0 - 10 * b, "reference": float("nan"), "delta": float("nan")})


def _robustness(run, mi, clean):
    for c in CORRUPTIONS:
        for s in (1, 2, 3):
            ref = clean * (1 - 0.12 * s) + float(run.rng.normal(0, 0.01))
            d = run.noise(0.01, bnb_nf4=-0.01 * s)
            run.add(mi, "robustness", "synthimagenet", "top1", f"{c}:s{s}", ref, d)
            run.add(mi, "robustness", "synthimagenet", "relative_drop", f"{c}:s{s}", 0.0,
                    {q: -d[q] / ref for q in QUANTIZERS})
    groups = run.rng.uniform(0.3, 0.9, 4)
    extra = {"worst_group": "2", "reference_worst_group": "2"}
    run.add(mi, "robustness", "synthwaterbirds", "worst_group_accuracy", "", float(groups.min()), run.noise(0.02),
            extra=extra)
    run.add(mi, "robustness", "synthwaterbirds", "average_accuracy", "", float(groups.mean()), run.noise(0.01),
            extra=extra)
    run.add(mi, "robustness", "synthwaterbirds", "mean_group_accuracy", "", float(groups.mean()),
            run.noise(0.01), extra=extra)
    for g, a in enumerate(groups):
        run.add(mi, "robustness", "synthwaterbirds", "group_accuracy", f"group{g}", float(a), run.noise(0.02))


def _throughput(run, mi):
    ratio = {"bnb-nf4": (0.3, 0.8, 0.5), "torch-int8": (0.27, 1.3, 0.6)}
    base = {"image_items_per_s": 200.0 * (mi + 1), "text_items_per_s": 900.0, "peak_memory_bytes": 4e8,
            "weight_bytes": 6e8 * (1 + mi / 4)}
    for metric, ref in base.items():
        i = {"weight_bytes": 0, "image_items_per_s": 1, "text_items_per_s": 1, "peak_memory_bytes": 2}[metric]
        run.add(mi, "throughput", "synthimagenet", metric, "", ref, {q: ref * (ratio[q][i] - 1) for q in QUANTIZERS},
                extra={"device": "cpu"})


def fake_rows(run_id="run-1", seed=0, families=None):
    """Rows of a fake run with every benchmark family the cells record (or only ``families``)."""
    run = _Run(run_id, seed)
    for mi in range(len(MODELS)):
        clean = float(run.rng.uniform(0.5, 0.8))
        fams = {
            "zeroshot": lambda mi=mi, clean=clean: [
                run.add(mi, "zeroshot", "synthimagenet", m, "", v, run.noise(0.005, bnb_nf4=-0.004))
                for m, v in (("top1", clean), ("top5", min(1, clean + 0.15)), ("mean_per_class_recall", clean))
            ],
            "retrieval": lambda mi=mi: [
                run.add(mi, "retrieval", "synthcoco", f"{kind}_retrieval_R@{k}", "",
                        float(run.rng.uniform(0.3, 0.5)) + 0.04 * k ** 0.5, run.noise(0.01))
                for kind in ("image", "text") for k in (1, 5, 10)
            ],
            "facet": lambda mi=mi: _facet(run, mi),
            "fairface": lambda mi=mi: _fairface(run, mi),
            "calibration": lambda mi=mi: _calibration(run, mi),
            "ood": lambda mi=mi: _ood(run, mi),
            "spectral": lambda mi=mi: _spectral(run, mi),
            "robustness": lambda mi=mi, clean=clean: _robustness(run, mi, clean),
            "throughput": lambda mi=mi: _throughput(run, mi),
        }
        for name, make in fams.items():
            if families is None or name in families:
                make()
    return run.rows


def _write_store(path, run_id, rows, meta=None):
    store = ResultStore(path)
    store.start_run(run_id, meta or {})
    store.add_rows(rows)
    for cell in sorted({r["cell_id"] for r in rows}):
        store.add_cell_status(run_id, cell, "passed", "", 0.5)
    return store


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    rows = fake_rows()
    meta = {
        "qclip_version": "0.1.0",
        "git_commit": "abc123",
        "libraries": {"torch": "2.5.0", "bitsandbytes": "0.47"},
        "device": "cpu",
    }
    store = _write_store(root / "results.sqlite", "run-1", rows, meta)
    store.add_cell_status(
        "run-1", "test_zeroshot[tiny:d-bnb-nf4-synthimagenet]", "error", "RuntimeError: CUDA out of memory", 0.1
    )
    gates = [
        GateOutcome("compare zeroshot/top1:0.01", True, ["10 matched row(s) within the threshold"]),
        GateOutcome("compare ece:5%", False, ["calibration/ece of tiny:a × bnb-nf4: worse"]),
    ]
    out = write_report(store, "latest", out_root=root / "reports", gates=gates)
    md = (out / "report.md").read_text(encoding="utf-8")
    yield store, root, out, md
    store.close()


@pytest.fixture(scope="module")
def stats(built):
    return population_stats(built[0].rows("run-1"))


def test_all_files_exist(built):
    _, root, out, _ = built
    assert out == root / "reports" / "run-1"
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(FIGURES)
    for png in pngs:
        assert (out / png).read_bytes().startswith(b"\x89PNG")
    latest = root / "reports" / "latest"
    assert latest.is_dir() and not latest.is_symlink()
    assert sorted(p.name for p in latest.iterdir()) == sorted(p.name for p in out.iterdir())
    assert (latest / "report.md").read_text() == (out / "report.md").read_text()


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.refs, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.imgs.append(attrs.get("src", ""))
        for key in ("src", "href"):
            if key in attrs:
                self.refs.append(attrs[key])


def test_html_is_self_contained(built):
    _, _, out, md = built
    text = (out / "report.html").read_text(encoding="utf-8")
    parser = _Refs()
    parser.feed(text)
    assert len(parser.imgs) == len(FIGURES)
    assert all(src.startswith("data:image/png;base64,") for src in parser.imgs)
    assert all(r.startswith(("data:image/png;base64,", "#")) for r in parser.refs), parser.refs
    assert "link" not in parser.tags and "script" not in parser.tags
    assert "http://" not in text and "https://" not in text and "url(" not in text
    assert 'class="sig05"' in text and 'class="sig10"' in text  # the paper's shading
    assert text.count("<details") >= 4 and "<summary>" in text  # per-class / per-value details collapsed
    assert "<nav" in text  # a table of contents with in-page links
    # Every figure referenced in Markdown is a file beside it, and every file is referenced.
    assert sorted(re.findall(r"\]\(([^)]+\.png)\)", md)) == sorted(FIGURES)


def _md_table(md: str, header_start: str) -> pd.DataFrame:
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    body = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        body.append([c.strip() for c in line.strip("|").split(" | ")])
    header = [c.strip() for c in lines[start].strip("|").split(" | ")]
    return pd.DataFrame(body, columns=header)


def _section(md: str, heading: str) -> str:
    start = md.index(f"## {heading}")
    end = md.find("\n## ", start + 3)
    return md[start : end if end > 0 else None]


_SIG = re.compile(r"(?P<delta>[+-]\S+) p=?(?P<p><?\.\d{3})(?P<mark>\**) \[(?P<lo>[^,]+), (?P<hi>[^\]]+)\]")


def test_markdown_table1_layout_with_marks(built):
    store, _, _, md = built
    header = "| Quantizer | Group | n | Min Disparity@1 | Max Disparity@1 | Min Disparity@5 | Max Disparity@5 |"
    assert header in md
    table = _md_table(md, header)
    # The paper's layout: the quantizer written once per block of four groups.
    assert list(table["Quantizer"]) == [q if i == 0 else "" for q in QUANTIZERS for i in range(4)]
    labels = ["Gender (M–F)", "Skin tone (L–D)", "Age (M–Y)", "Age (M–O)"]
    assert list(table["Group"]) == labels * 2
    assert (table["n"] == str(len(MODELS))).all()
    table["Quantizer"] = [q for q in QUANTIZERS for _ in range(4)]

    rows = store.rows("run-1")
    groups = dict(zip(labels, FACET_GROUPS, strict=True))
    for r in table.itertuples(index=False):
        for metric in FACET_METRICS:
            cell = getattr(r, "_" + str(3 + FACET_METRICS.index(metric)))
            sel = rows[
                (rows.quantizer == r.Quantizer) & (rows.metric == metric) & (rows.subgroup == groups[r.Group])
            ].sort_values("model")
            res = sst.ttest_rel(sel.value, sel.reference)
            ci = res.confidence_interval()
            expected_mark = "**" if res.pvalue < 0.05 else "*" if res.pvalue < 0.10 else ""
            m = _SIG.fullmatch(cell)
            assert m, cell
            assert float(m["delta"]) == pytest.approx(float((sel.value - sel.reference).mean()), abs=6e-5)
            assert m["p"] == fmt_p(res.pvalue) and m["mark"] == expected_mark, (cell, res.pvalue)
            assert float(m["lo"]) == pytest.approx(ci.low, abs=6e-5), cell
            assert float(m["hi"]) == pytest.approx(ci.high, abs=6e-5), cell
    strong = table[(table.Quantizer == STRONG[0]) & (table.Group == "Skin tone (L–D)")]["Max Disparity@1"].item()
    borderline = table[(table.Quantizer == BORDERLINE[0]) & (table.Group == "Gender (M–F)")]["Min Disparity@1"]
    assert "**" in strong
    assert "*" in borderline.item() and "**" not in borderline.item()
    assert list(GROUP_LABELS.values()) == labels


def test_facet_details_not_in_main_table(built):
    _, _, _, md = built
    facet = _section(md, "Fairness: FACET")
    assert "(facet.png)" in facet
    assert "| Model | Gender (M–F) @1 |" in facet  # per-model fp32 ranges
    assert "Largest per-class changes" in facet
    assert sum(line.startswith("- ") and "Disparity@" in line for line in facet.splitlines()) >= 3
    assert "doctor" in facet and "| doctor |" not in facet  # details listed, not dumped as table rows


def test_fairface_tables(built):
    _, _, _, md = built
    ff = _section(md, "Fairness: FairFace")
    header = "| Quantizer | Attribute | n | MaxSkew@1000 | MinSkew@1000 | NDKL@1000 |"
    assert ff.count(header) == 2  # demographic parity, then equal representation
    parity = _md_table(ff, header)
    assert [a for a in parity["Attribute"]] == ["Gender", "Race", "Age (binned)"] * 2
    assert "Equal representation" in ff and "Demographic parity" in ff
    assert "Largest per-value changes" in ff and "(fairface.png)" in ff
    assert "| Female |" not in ff


def test_calibration_section(built):
    store, _, _, md = built
    cal = _section(md, "Calibration")
    assert "(calibration_ece.png)" in cal and "(reliability_diagrams.png)" in cal
    table = _md_table(cal, "| Quantizer | n | ECE fp32 → quantized |")
    assert list(table["Quantizer"]) == list(QUANTIZERS)
    rows = store.rows("run-1")
    for q, toward in zip(table["Quantizer"], table["Confidence moved toward"], strict=True):
        oc = rows[(rows.quantizer == q) & (rows.metric == "overconfidence")]
        assert toward == f"{int((oc.delta > 0).sum())} over / {int((oc.delta < 0).sum())} under"
    rel = rows[(rows.quantizer == "bnb-nf4") & (rows.metric == "relative_ece_change")]
    assert table["Relative ECE change"].iloc[0].startswith(f"{100 * rel.value.mean():+.1f}%")
    tuned = rows[(rows.quantizer == "bnb-nf4") & (rows.metric == "ece_logit_tuned")]
    assert table["ECE after logit-scale tuning"].iloc[0].startswith(f"{tuned.reference.mean():.4f} → "
                                                                     f"{tuned.value.mean():.4f}")
    assert "| Quantizer | Metric | n | fp32 | quantized | Δ (p, 95% CI) | p (Holm) | models ↑/↓ |" in cal


def test_reliability_sections(built):
    _, _, _, md = built
    ood = _section(md, "OOD detection")
    assert "ID is the positive class" in ood and "OpenOOD" in ood and "(ood.png)" in ood
    assert "| OOD set · score | Quantizer | n | AUROC fp32 | AUROC quantized | ΔAUROC |" in ood
    spec = _section(md, "Spectral")
    assert "(spectral.png)" in spec and "| Model | Quantizer | Effective rank fp32 → quantized |" in spec
    assert "| SQNR top 10% of ranks | SQNR 10–50% | SQNR 50–100% |" in spec and "| 40.0 dB | 30.0 dB |" in spec
    assert "| top-1 top 10% of ranks | top-1 10–50% | top-1 50–100% |" in spec
    rob = _section(md, "Robustness")
    assert "(robustness.png)" in rob and "| Corruption | Severity | fp32 top-1 |" in rob
    assert "Worst-group accuracy" in rob
    cost = _section(md, "Cost")
    assert "| Model | Quantizer | Weights (MB) |" in cost and "Top-1 Δ" in cost


def test_markdown_sections(built):
    _, _, _, md = built
    for heading in (
        "## Run",
        "## At a glance",
        "## Cells",
        "## Gates",
        "## Accuracy",
        "## Fairness: FACET",
        "## Fairness: FairFace",
        "## Calibration",
        "## OOD detection",
        "## Spectral",
        "## Robustness",
        "## Cost",
        "## Δ distributions",
        "## Conventions",
    ):
        assert heading in md, heading
    assert "**PASS** compare zeroshot/top1:0.01" in md and "**FAIL** compare ece:5%" in md
    assert "CUDA out of memory" in md
    assert "ID samples are the positive class" in md
    assert "| libraries.torch | 2.5.0 |" in md and "| git_commit | abc123 |" in md
    assert "![" in md and "(accuracy.png)" in md
    assert "| Model | Dataset | Metric | fp32 | bnb-nf4 | torch-int8 |" in md


def test_csv_json_round_trip(built, stats):
    store, _, out, _ = built
    rows = store.rows("run-1")
    pd.testing.assert_frame_equal(read_rows(out / "results.csv"), rows)
    pd.testing.assert_frame_equal(read_rows(out / "results.json"), rows)
    records = json.loads((out / "results.json").read_text())
    assert len(records) == len(fake_rows()) and set(records[0]) == set(ROW_COLUMNS)
    written = pd.read_csv(out / "stats.csv")
    assert list(written.columns) == list(STATS_COLUMNS)
    assert len(written) == len(stats)


def test_terminal_summary(built, stats):
    store, _, _, _ = built
    rows = store.rows("run-1")
    lines = terminal_summary(rows, stats)
    assert 3 <= len(lines) <= 25
    assert lines[0].startswith("qclip: ") and f"{len(MODELS)} models" in lines[0]
    assert any(line.startswith("bnb-nf4") for line in lines)
    assert terminal_summary(rows.iloc[:0], population_stats(rows.iloc[:0])) == [
        "qclip: no result rows recorded."
    ]


def test_long_layout_beyond_six_metrics():
    rows = pd.DataFrame(fake_rows(families={"facet"}))
    rows = rows[rows.metric.isin(FACET_METRICS)].assign(
        benchmark="ood", metric=lambda d: d.metric + "_" + d.subgroup, subgroup=""
    )
    table = significance_table(population_stats(rows), "ood")
    assert list(table.columns) == ["Quantizer", "Group", "Metric", "n", "Δ mean", "p", "95% CI", "p (Holm)", "Verdict"]
    assert len(table) == 2 * 16


def test_metric_labels():
    assert [metric_label(m) for m in ("min_disparity@1", "max_skew@1000", "ndkl@1000", "ece", "top1")] == [
        "Min Disparity@1",
        "MaxSkew@1000",
        "NDKL@1000",
        "ECE",
        "top1",
    ]


def test_two_models_say_n_too_small():
    rows = normalize_rows(pd.DataFrame([r for r in fake_rows(run_id="small") if r["model"] in MODELS[:2]]))
    stats = population_stats(rows)
    md = render_markdown("t", build_document("small", {}, rows, rows.iloc[:0][["cell_id"]], stats, None, {}))
    for heading in ("Fairness: FACET", "Fairness: FairFace", "Calibration", "OOD detection", "Spectral", "Robustness"):
        assert "n too small" in _section(md, heading), heading
    table = _md_table(md, "| Quantizer | Group | n | Min Disparity@1 |")
    cells = table[["Min Disparity@1", "Max Disparity@1", "Min Disparity@5", "Max Disparity@5"]].to_numpy().ravel()
    assert all("(n=2: n too small)" in c and "p=" not in c for c in cells)
    colors = quantizer_colors(rows["quantizer"].unique())
    for role, _, builder in FIGURE_BUILDERS:  # every figure still draws (no CI bars) with two models
        if role.startswith("study_"):  # need a W × A quantizer, which this run has not: tests/test_report_study.py
            continue
        assert builder(rows, colors) is not None, role


def test_empty_and_second_run_refresh_latest(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.start_run("empty-run", {})
        out = write_report(store, "empty-run", out_root=tmp_path / "reports")
        md = (out / "report.md").read_text()
        assert "No zero-shot top-1 or retrieval R@1 rows" in md and "No `facet` rows" in md
        for bench in ("fairface", "calibration", "ood", "spectral", "robustness", "throughput"):
            assert f"No `{bench}` rows" in md, bench
        assert "No gates were configured" in md and "No cell status rows" in md
        assert all((out / name).is_file() for name in REPORT_FILES)
        assert not list(out.glob("*.png"))
        assert "empty-run" in (tmp_path / "reports" / "latest" / "report.md").read_text()

        store.start_run("second/run", {})
        store.add_rows(fake_rows(run_id="second/run", seed=1, families={"zeroshot", "retrieval"}))
        out2 = write_report(store, "latest", out_root=tmp_path / "reports", gates=[])
        assert out2.name == "second_run"
        latest_md = (tmp_path / "reports" / "latest" / "report.md").read_text()
        assert "second/run" in latest_md and "empty-run" not in latest_md
        assert "Gates ran and found no regression." in latest_md
        assert (tmp_path / "reports" / "empty-run" / "report.md").is_file()
        assert {p.name for p in out2.glob("*.png")} == {"accuracy.png", "delta.png"}


def test_skipped_cells_explain_empty_section(tmp_path):
    rows = [dict(r, value=float("nan"), reference=float("nan"), delta=float("nan"), status="skipped")
            for r in fake_rows(run_id="skip", families={"facet"})]
    with _write_store(tmp_path / "r.sqlite", "skip", rows) as store:
        for cell in {r["cell_id"] for r in rows}:
            store.add_cell_status("skip", cell, "skipped", "Skipped: no FACET class has >= 25 people", 0.1)
        out = write_report(store, "skip", out_root=tmp_path / "reports")
    facet = _section((out / "report.md").read_text(), "Fairness: FACET")
    assert "No `facet` rows" in facet and "no FACET class has >= 25 people" in facet


def test_figures_are_drawn_once_per_content(tmp_path, monkeypatch):
    from qclip.report import figures

    rows = normalize_rows(pd.DataFrame(fake_rows()))
    memo = tmp_path / "memo"
    first, errors = figures.write_figures(rows, tmp_path / "a", memo=memo)
    assert not errors and len(list(memo.glob("*.png"))) == len(first)

    drawn = []
    monkeypatch.setattr(figures.plots, "save_png", lambda fig, path: drawn.append(path))
    # the same results, reported by another run in another order: copied, not drawn
    again = rows.assign(run_id="run-2").sample(frac=1.0, random_state=0)
    second, _ = figures.write_figures(again, tmp_path / "b", memo=memo)
    assert second == first and drawn == []
    for name in first.values():
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()

    changed = rows.copy()
    changed.loc[changed.index[0], "value"] = float(changed["value"].iloc[0]) + 0.5  # one value moved
    figures.write_figures(changed, tmp_path / "c", memo=memo)
    assert len(drawn) == len(first)  # new content: every figure drawn again


def test_a_memo_that_cannot_be_read_costs_the_copy_not_the_figure(tmp_path, monkeypatch):
    from qclip.report import figures

    rows = normalize_rows(pd.DataFrame(fake_rows()))
    memo = tmp_path / "memo"
    first, _ = figures.write_figures(rows, tmp_path / "a", memo=memo)
    real_copy = figures.shutil.copyfile

    def broken(src, dst, *a, **k):
        if str(src).startswith(str(memo)):
            raise OSError("memo unreadable")
        return real_copy(src, dst, *a, **k)

    monkeypatch.setattr(figures.shutil, "copyfile", broken)
    again, errors = figures.write_figures(rows, tmp_path / "b", memo=memo)
    assert again == first and not errors
    assert all((tmp_path / "b" / name).read_bytes().startswith(b"\x89PNG") for name in again.values())


def test_the_default_runs_quantizers_get_distinct_colours():
    names = ["fp32", "fp16", "bf16", "bnb-int8", "bnb-nf4", "bnb-fp4", "torch-dyn-int8", "ao-int8wo", "ao-int8dyn",
             "ao-int4wo", "w8a8", "w6a8", "w4a8", "w4a8-gptq", "w4a8-lsq", "w4a8-smooth"]
    colors = quantizer_colors(names)
    assert len(set(colors.values())) == len(names)
