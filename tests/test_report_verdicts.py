"""The report's verdicts: the Verdict column of the Table-1 (FACET) and Table-2 (FairFace) sections and the
stats tables, the statistics section, the margins stats.csv carries, and the run's --qclip-equivalence."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from qclip.expect.equivalence import margin_function
from qclip.report import write_report
from qclip.report.document import STATISTICS
from qclip.report.tables import metric_label, verdict_text, verdicts_cell
from qclip.stats import population_stats
from tests.test_report import (
    FACET_GROUPS,
    FACET_METRICS,
    QUANTIZERS,
    _md_table,
    _section,
    _write_store,
    fake_rows,
)


def _report(tmp_path, meta=None):
    rows = fake_rows(families={"facet", "fairface", "calibration"})
    store = _write_store(tmp_path / "results.sqlite", "run-1", rows, meta or {})
    out = write_report(store, "run-1", out_root=tmp_path / "reports")
    stats = pd.read_csv(out / "stats.csv", keep_default_na=False, na_values=[""])
    return store, out, (out / "report.md").read_text(encoding="utf-8"), stats


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    store, out, md, stats = _report(tmp_path_factory.mktemp("verdicts"))
    yield store, out, md, stats
    store.close()


def test_stats_csv_carries_tost_and_power(report):
    _, _, _, stats = report
    for col in ("margin", "p_tost", "ci90_low", "ci90_high", "verdict", "mde"):
        assert col in stats.columns
    facet = stats[stats["benchmark"] == "facet"]
    assert (facet["margin"] == 0.02).all()  # the default of qclip/expect/equivalence.yaml
    assert facet["p_tost"].between(0, 1).all() and (facet["ci90_low"] <= facet["ci90_high"]).all()
    assert set(facet["verdict"]) <= {"different", "equivalent", "inconclusive"}
    # the 90% CI is narrower than the 95% one
    assert ((facet["ci90_high"] - facet["ci90_low"]) < (facet["ci_high"] - facet["ci_low"])).all()


def test_table1_has_a_verdict_column_that_reads_the_stats(report):
    store, _, md, _ = report
    header = "| Quantizer | Group | n | Min Disparity@1 | Max Disparity@1 | Min Disparity@5 | Max Disparity@5 | Verdict |"
    assert header in md
    table = _md_table(md, header)
    table["Quantizer"] = [q for q in QUANTIZERS for _ in range(4)]
    stats = population_stats(store.rows("run-1"), margin_function())
    labels = ["Gender (M–F)", "Skin tone (L–D)", "Age (M–Y)", "Age (M–O)"]
    groups = dict(zip(labels, FACET_GROUPS, strict=True))
    for r in table.itertuples(index=False):
        sel = stats[(stats.benchmark == "facet") & (stats.quantizer == r.Quantizer)
                    & (stats.subgroup == groups[r.Group]) & stats.metric.isin(FACET_METRICS)]
        sel = sel.set_index("metric").loc[list(FACET_METRICS)].reset_index()
        expected = verdicts_cell(list(sel.itertuples()), [metric_label(m) for m in sel["metric"]]).text
        assert r.Verdict == expected


def test_table2_sections_have_the_verdict_column(report):
    _, _, md, _ = report
    ff = _section(md, "Fairness: FairFace")
    assert ff.count("| Quantizer | Attribute | n | MaxSkew@1000 | MinSkew@1000 | NDKL@1000 | Verdict |") == 2


def test_the_statistics_section_explains_each_statistic(report):
    _, out, md, stats = report
    sec = _section(md, "Statistics")
    for sentence in STATISTICS:
        assert sentence.split(":")[0] in sec
    assert "Verdicts of this run's findings:" in sec and "Margins used" in sec
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "td.vequiv" in html


def test_the_runs_equivalence_overrides_are_used_again_by_the_report(tmp_path):
    store, _, md, stats = _report(tmp_path, {"equivalence": ["max_disparity@*:0.5"]})
    facet = stats[stats["benchmark"] == "facet"]
    assert (facet[facet.metric.str.startswith("max_")]["margin"] == 0.5).all()
    assert (facet[facet.metric.str.startswith("min_")]["margin"] == 0.02).all()
    store.close()


@pytest.mark.parametrize("row, text", [
    (dict(n=8, verdict="different", margin=0.02, mde=0.01), "different"),
    (dict(n=8, verdict="equivalent", margin=0.02, mde=0.0113), "equivalent ±0.02 (MDE 0.0113)"),
    (dict(n=8, verdict="inconclusive", margin=0.02, mde=0.031), "inconclusive (MDE 0.031 > ±0.02: too few models)"),
    (dict(n=8, verdict="inconclusive", margin=0.02, mde=0.011), "inconclusive (MDE 0.011)"),
    (dict(n=8, verdict="inconclusive", margin=math.nan, mde=0.004), "inconclusive (MDE 0.004, no margin)"),
    (dict(n=2, verdict="", margin=0.02, mde=math.nan), "n too small"),
])
def test_verdict_text(row, text):
    assert verdict_text(SimpleNamespace(**row)) == text


def test_verdicts_cell_lists_per_metric_only_when_they_differ():
    a = SimpleNamespace(n=8, verdict="different", margin=0.02, mde=0.01)
    b = SimpleNamespace(n=8, verdict="equivalent", margin=0.02, mde=0.01)
    assert verdicts_cell([a, a], ["A", "B"]).text == "different" and verdicts_cell([a, a], ["A", "B"]).css == "vdiff"
    mixed = verdicts_cell([a, b], ["A", "B"])
    assert mixed.text == "A: different · B: equivalent ±0.02 (MDE 0.01)" and mixed.css == ""


def test_the_glance_table_shows_flips_kl_and_cosine(tmp_path):
    """A quantizer with Δtop-1 ≈ 0 but many flips is visible at a glance."""
    rows = fake_rows(families={"zeroshot"})
    extra = []
    planted = {"flip_rate": (0.0, 0.08), "flip_right_to_wrong": (0.0, 0.04), "flip_wrong_to_right": (0.0, 0.04),
               "mean_kl": (0.0, 0.0123), "embedding_cosine": (1.0, 0.9876)}
    for r in rows:
        if r["metric"] == "top1" and r["subgroup"] == "":
            for metric, (ref, value) in planted.items():
                extra.append({**r, "metric": metric, "reference": ref, "value": ref if r["quantizer"] == "fp32" else value,
                              "delta": 0.0 if r["quantizer"] == "fp32" else value - ref})
    store = _write_store(tmp_path / "results.sqlite", "run-1", rows + extra)
    md = (write_report(store, "run-1", out_root=tmp_path / "reports") / "report.md").read_text(encoding="utf-8")
    glance = _section(md, "At a glance")
    table = _md_table(glance, "| Quantizer |")
    assert {"Top-1 flips", "KL (nats)", "Embedding cosine"} <= set(table.columns)
    q = QUANTIZERS[0]
    row = table[table["Quantizer"] == q].iloc[0]
    assert row["Top-1 flips"] == "8.0% (4.0% →wrong, 4.0% →right)"
    assert row["KL (nats)"] == "0.0123" and row["Embedding cosine"] == "0.9876"
    store.close()
