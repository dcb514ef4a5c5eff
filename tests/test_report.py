"""qclip.report: a fake run through write_report; files, self-contained HTML, Table-1 layout."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst

from qclip.gate import GateOutcome
from qclip.report import REPORT_FILES, terminal_summary, write_report
from qclip.report.tables import fmt, fmt_p, metric_label, significance_table
from qclip.results import ROW_COLUMNS, ResultStore, read_rows
from qclip.stats import STATS_COLUMNS, population_stats

MODELS = ("open_clip:ViT-B-32/laion2b", "open_clip:ViT-B-16/openai", "tiny:a", "tiny:b", "tiny:c")
QUANTIZERS = ("bnb-nf4", "torch-int8")
FACET_GROUPS = ("gender", "skin_tone", "age_young", "age_older")
FACET_METRICS = ("min_disparity@1", "max_disparity@1", "min_disparity@5", "max_disparity@5")
# Planted effects: a clear shift (p < .05) and a borderline one (.05 <= p < .10).
STRONG = ("bnb-nf4", "max_disparity@1", "skin_tone")
BORDERLINE = ("torch-int8", "min_disparity@1", "gender")
BORDERLINE_DELTAS = (0.01, 0.02, -0.002, 0.015, 0.007)


def _spec():
    spec = [
        ("zeroshot", "synthimagenet", "top1", ""),
        ("retrieval", "synthcoco", "image_retrieval_R@1", ""),
        ("retrieval", "synthcoco", "text_retrieval_R@1", ""),
    ]
    spec += [("facet", "synthfacet", m, g) for g in FACET_GROUPS for m in FACET_METRICS]
    spec += [
        ("fairface", "synthfairface", m, g)
        for g in ("gender", "race", "age")
        for m in ("min_skew@1000", "max_skew@1000")
    ]
    spec += [("calibration", "synthimagenet", m, "") for m in ("ece", "nll", "brier")]
    spec += [("ood", "synthood", m, "") for m in ("auroc", "fpr95")]
    spec += [("throughput", "synthimagenet", m, "") for m in ("latency_ms", "weight_bytes")]
    return spec


def fake_rows(run_id="run-1", seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for mi, model in enumerate(MODELS):
        for bench, ds, metric, sub in _spec():
            ref = float(rng.uniform(0.3, 0.9))
            for q in ("fp32", *QUANTIZERS):
                d = 0.0 if q == "fp32" else float(rng.normal(0, 0.01))
                if (q, metric, sub) == STRONG:
                    d += 0.05
                if (q, metric, sub) == BORDERLINE:
                    d = BORDERLINE_DELTAS[mi]
                rows.append(
                    dict(
                        run_id=run_id,
                        cell_id=f"test_{bench}[{model}-{q}-{ds}]",
                        model=model,
                        quantizer=q,
                        benchmark=bench,
                        dataset=ds,
                        metric=metric,
                        subgroup=sub,
                        value=ref + d,
                        reference=ref,
                        delta=d,
                        n=100,
                        status="passed",
                        extra={"seed": seed} if metric == "top1" else None,
                    )
                )
    return rows


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    store = ResultStore(root / "results.sqlite")
    store.start_run(
        "run-1",
        {
            "qclip_version": "0.1.0",
            "git_commit": "abc123",
            "libraries": {"torch": "2.5.0", "bitsandbytes": "0.47"},
            "device": "cpu",
        },
    )
    rows = fake_rows()
    store.add_rows(rows)
    for cell in sorted({r["cell_id"] for r in rows}):
        store.add_cell_status("run-1", cell, "passed", "", 0.5)
    store.add_cell_status(
        "run-1",
        "test_zeroshot[tiny:d-bnb-nf4-synthimagenet]",
        "error",
        "RuntimeError: CUDA out of memory",
        0.1,
    )
    gates = [
        GateOutcome("compare zeroshot/top1:0.01", True, ["10 matched row(s) within the threshold"]),
        GateOutcome("compare ece:5%", False, ["calibration/ece of tiny:a × bnb-nf4: worse"]),
    ]
    out = write_report(store, "latest", out_root=root / "reports", gates=gates)
    yield store, root, out
    store.close()


def test_all_files_exist(built):
    _, root, out = built
    assert out == root / "reports" / "run-1"
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["accuracy.png", "delta_bnb-nf4.png", "delta_torch-int8.png"]
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
    _, _, out = built
    text = (out / "report.html").read_text(encoding="utf-8")
    parser = _Refs()
    parser.feed(text)
    assert len(parser.imgs) == 3
    assert all(src.startswith("data:image/png;base64,") for src in parser.imgs)
    assert not [r for r in parser.refs if r.lower().startswith(("http:", "https:", "//"))]
    assert "link" not in parser.tags and "script" not in parser.tags
    assert "http://" not in text and "https://" not in text and "url(" not in text
    assert 'class="sig05"' in text and 'class="sig10"' in text  # the paper's shading


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


def test_markdown_table1_layout_with_marks(built):
    store, _, out = built
    md = (out / "report.md").read_text(encoding="utf-8")
    header = (
        "| Quantizer | Group | n | Min Disparity@1 | Max Disparity@1 | Min Disparity@5 | Max Disparity@5 |"
    )
    assert header in md
    table = _md_table(md, header)
    assert list(table["Quantizer"]) == [q for q in QUANTIZERS for _ in FACET_GROUPS]
    assert list(table["Group"]) == ["Gender (MF)", "Skin Tone (LD)", "Age (MY)", "Age (MO)"] * 2
    assert (table["n"] == str(len(MODELS))).all()

    rows = store.rows("run-1")
    groups = dict(zip(["Gender (MF)", "Skin Tone (LD)", "Age (MY)", "Age (MO)"], FACET_GROUPS, strict=True))
    for r in table.itertuples(index=False):
        for metric in FACET_METRICS:
            cell = getattr(r, "_" + str(3 + FACET_METRICS.index(metric)))
            sel = rows[
                (rows.quantizer == r.Quantizer) & (rows.metric == metric) & (rows.subgroup == groups[r.Group])
            ].sort_values("model")
            res = sst.ttest_rel(sel.value, sel.reference)
            ci = res.confidence_interval()
            expected_mark = "**" if res.pvalue < 0.05 else "*" if res.pvalue < 0.10 else ""
            p = fmt_p(res.pvalue)
            assert cell.startswith(fmt(float((sel.value - sel.reference).mean()))), cell
            assert f"{p}{expected_mark} [" in cell, (cell, p, expected_mark)
            assert f"[{fmt(ci.low)}, {fmt(ci.high)}]" in cell
    strong = table[(table.Quantizer == STRONG[0]) & (table.Group == "Skin Tone (LD)")][
        "Max Disparity@1"
    ].item()
    borderline = table[(table.Quantizer == BORDERLINE[0]) & (table.Group == "Gender (MF)")]["Min Disparity@1"]
    assert "**" in strong
    assert "*" in borderline.item() and "**" not in borderline.item()


def test_markdown_sections(built):
    _, _, out = built
    md = (out / "report.md").read_text(encoding="utf-8")
    for heading in (
        "## Run",
        "## Cells",
        "## Gates",
        "## Accuracy",
        "## Fairness: FACET",
        "## Fairness: FairFace",
        "## Calibration",
        "## OOD detection",
        "## Robustness",
        "## Cost",
        "## Δ distributions",
        "## Conventions",
    ):
        assert heading in md, heading
    assert "No `robustness` rows" in md  # empty sections say so
    assert "| Quantizer | Group | n | MinSkew@1000 | MaxSkew@1000 |" in md
    assert "**PASS** compare zeroshot/top1:0.01" in md and "**FAIL** compare ece:5%" in md
    assert "CUDA out of memory" in md
    assert "ID samples are the positive class" in md
    assert "| libraries.torch | 2.5.0 |" in md and "| git_commit | abc123 |" in md
    assert "![" in md and "(accuracy.png)" in md
    assert "| Model | Dataset | Metric | fp32 | bnb-nf4 | torch-int8 |" in md
    assert "| Model | Quantizer | latency_ms | weight_bytes |" in md


def test_csv_json_round_trip(built):
    store, _, out = built
    rows = store.rows("run-1")
    pd.testing.assert_frame_equal(read_rows(out / "results.csv"), rows)
    pd.testing.assert_frame_equal(read_rows(out / "results.json"), rows)
    records = json.loads((out / "results.json").read_text())
    assert len(records) == len(fake_rows()) and set(records[0]) == set(ROW_COLUMNS)
    stats = pd.read_csv(out / "stats.csv")
    assert list(stats.columns) == list(STATS_COLUMNS)
    assert len(stats) == len(population_stats(rows))


def test_terminal_summary(built):
    store, _, _ = built
    rows = store.rows("run-1")
    lines = terminal_summary(rows, population_stats(rows))
    assert 3 <= len(lines) <= 25
    assert lines[0].startswith("qclip: ") and f"{len(MODELS)} models" in lines[0]
    assert any(line.startswith("bnb-nf4") for line in lines)
    assert any("facet/max_disparity@1 [skin_tone]" in line and "**" in line for line in lines)
    assert terminal_summary(rows.iloc[:0], population_stats(rows.iloc[:0])) == [
        "qclip: no result rows recorded."
    ]


def test_long_layout_beyond_six_metrics():
    rows = pd.DataFrame(fake_rows())
    rows = rows[rows.benchmark == "facet"].assign(
        benchmark="ood", metric=lambda d: d.metric + "_" + d.subgroup, subgroup=""
    )
    table = significance_table(population_stats(rows), "ood")
    assert list(table.columns) == ["Quantizer", "Group", "Metric", "n", "Δ mean", "p", "95% CI", "p (Holm)"]
    assert len(table) == 2 * 16


def test_metric_labels():
    assert [metric_label(m) for m in ("min_disparity@1", "max_skew@1000", "ece")] == [
        "Min Disparity@1",
        "MaxSkew@1000",
        "ece",
    ]


def test_empty_and_second_run_refresh_latest(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.start_run("empty-run", {})
        out = write_report(store, "empty-run", out_root=tmp_path / "reports")
        md = (out / "report.md").read_text()
        assert "No zero-shot top-1 or retrieval R@1 rows" in md and "No `facet` rows" in md
        assert "No gates were configured" in md and "No cell status rows" in md
        assert all((out / name).is_file() for name in REPORT_FILES)
        assert "empty-run" in (tmp_path / "reports" / "latest" / "report.md").read_text()

        store.start_run("second/run", {})
        store.add_rows(fake_rows(run_id="second/run", seed=1)[:40])
        out2 = write_report(store, "latest", out_root=tmp_path / "reports", gates=[])
        assert out2.name == "second_run"
        latest_md = (tmp_path / "reports" / "latest" / "report.md").read_text()
        assert "second/run" in latest_md and "empty-run" not in latest_md
        assert "Gates ran and found no regression." in latest_md
        assert (tmp_path / "reports" / "empty-run" / "report.md").is_file()
