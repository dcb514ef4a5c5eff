"""qclip.expect.gate: parsing --qclip-compare-fail, metric directions, and regressions against a baseline."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
import pytest

from qclip.benchmarks import FAMILIES, direction_of
from qclip.expect.gate import (
    GateOutcome,
    RegressionCheck,
    compare,
    load_baseline,
    parse_compare_fail,
    run_gates,
)
from qclip.results import ResultStore, write_rows_csv, write_rows_json


def _rows(run_id="base", overrides=None):
    overrides = overrides or {}
    spec = [
        ("zeroshot", "synthimagenet", "top1", "", 0.70),
        ("calibration", "synthimagenet", "ece", "", 0.05),
        ("ood", "synthimagenet", "mcm_fpr95", "synthood", 0.40),
        ("ood", "synthimagenet", "mcm_auroc", "synthood", 0.80),
        ("facet", "synthfacet", "max_disparity@1", "skin_tone", -0.10),
    ]
    rows = []
    for model in ("tiny:a", "tiny:b"):
        for bench, ds, metric, sub, value in spec:
            v = overrides.get((model, metric), value)
            rows.append(
                dict(
                    run_id=run_id,
                    cell_id=f"test_{bench}[{model}-bnb-nf4-{ds}]",
                    model=model,
                    quantizer="bnb-nf4",
                    benchmark=bench,
                    dataset=ds,
                    metric=metric,
                    subgroup=sub,
                    value=v,
                    reference=value,
                    delta=v - value,
                    n=100,
                    status="passed",
                    extra=None,
                )
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("top1:0.01", RegressionCheck("top1", 0.01, False, None)),
        ("zeroshot/top1:0.01", RegressionCheck("top1", 0.01, False, "zeroshot")),
        ("ece:10%", RegressionCheck("ece", 10.0, True, None)),
        (
            "retrieval/image_retrieval_R@1:2.5%",
            RegressionCheck("image_retrieval_R@1", 2.5, True, "retrieval"),
        ),
        ("facet/*disparity@1:.02", RegressionCheck("*disparity@1", 0.02, False, "facet")),
        ("nll:1e-3", RegressionCheck("nll", 1e-3, False, None)),
    ],
)
def test_parse_compare_fail(text, expected):
    check = parse_compare_fail(text)
    assert check == expected
    assert parse_compare_fail(check.text) == check


@pytest.mark.parametrize(
    "text",
    ["top1", "top1:", ":0.1", "top1:-0.1", "top1:abc", "a/b/c:1", "top1:1pp", "top1:5%%", "", "top 1:0.1"],
)
def test_parse_compare_fail_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"Expected METRIC:X .* but got"):
        parse_compare_fail(text)


@pytest.mark.parametrize("text, says", [
    ("fpr95:0.01", "did you mean"),  # no cell records a bare fpr95: the OOD cells record mcm_fpr95 ...
    ("fpr@95_mcm:0.01", "no recorded metric"),
    ("zeroshot/ece:0.01", "in benchmark 'zeroshot'"),
    ("temperature:0.1", "descriptive"),
    ("effective_rank:1", "descriptive"),
])
def test_parse_compare_fail_rejects_unknown_or_descriptive_metrics(text, says):
    with pytest.raises(argparse.ArgumentTypeError, match=says) as info:
        parse_compare_fail(text)
    assert text in str(info.value)


def test_parser_works_as_argparse_type():
    parser = argparse.ArgumentParser()
    parser.add_argument("--qclip-compare-fail", type=parse_compare_fail, action="append")
    ns = parser.parse_args(["--qclip-compare-fail", "top1:1%"])
    assert ns.qclip_compare_fail == [RegressionCheck("top1", 1.0, True)]


@pytest.mark.parametrize("family, metric, direction", [
    ("ood", "mcm_fpr95", "lower"), ("ood", "msp_fpr95", "lower"), ("ood", "energy_auroc", "higher"),
    ("calibration", "ece_heldout", "lower"), ("calibration", "ece_temp_scaled", "lower"),
    ("calibration", "relative_ece_change", "lower"), ("calibration", "temperature", "none"),
    ("spectral", "nsr_total", "lower"), ("robustness", "relative_drop", "lower"),
    ("throughput", "weight_bytes", "lower"), ("facet", "min_disparity@5", "zero"),
    ("fairface", "max_skew@1000", "zero"), ("fairface", "ndkl@200", "lower"),
])
def test_names_the_old_guess_got_wrong(family, metric, direction):
    """These were guessed from the name (fpr*, ece, ...) and came out higher-is-better."""
    assert direction_of(family, metric) == direction


def _declared():
    for fam in FAMILIES.values():
        for m in fam.metrics:
            if m.direction != "none":
                yield pytest.param(fam.name, m, id=f"{fam.name}-{m.name}")


def _one_row(benchmark, metric, value, base):
    return pd.DataFrame([dict(run_id="r", cell_id="c", model="tiny:a", quantizer="bnb-nf4", benchmark=benchmark,
                              dataset="d", metric=metric, subgroup="", value=value, reference=base,
                              delta=value - base, n=1, status="passed", extra=None)])


@pytest.mark.parametrize("family, metric", list(_declared()))
def test_every_declared_metric_is_gated_in_its_direction(family, metric):
    """Built from the declaration: a planted regression of 0.1 fails a 0.05 gate, the mirrored
    improvement passes, for every metric a cell records."""
    name = metric.name.replace("@K", "@5")
    base = 0.3 if metric.direction != "zero" else -0.3
    step = {"higher": -0.1, "lower": 0.1, "zero": -0.1}[metric.direction]  # the worse way
    check = [parse_compare_fail(f"{family}/{name}:0.05")]
    baseline = _one_row(family, name, base, base)
    worse = compare(_one_row(family, name, base + step, base), baseline, check)
    assert len(worse) == 1 and metric.better in str(worse[0])
    assert compare(_one_row(family, name, base - step, base), baseline, check) == []


@pytest.mark.parametrize("text, metric, worse, better", [
    ("ood/mcm_fpr95:0.01", "mcm_fpr95", 0.5, 0.3),
    ("calibration/ece:0.01", "ece", 0.08, 0.02),
    ("zeroshot/top1:0.01", "top1", 0.6, 0.8),
    ("ood/mcm_auroc:0.01", "mcm_auroc", 0.7, 0.9),
])
def test_planted_regressions_in_both_directions(text, metric, worse, better):
    """Lower-is-better (FPR95, ECE) and higher-is-better (top-1, AUROC): regressions fail, the mirrored
    improvements pass."""
    base = _rows()
    check = [parse_compare_fail(text)]
    assert len(compare(_rows(overrides={("tiny:a", metric): worse}), base, check)) == 1
    assert compare(_rows(overrides={("tiny:a", metric): better}), base, check) == []


def test_a_glob_skips_descriptive_metrics():
    rows = pd.concat([_one_row("calibration", "temperature", 9.0, 1.0), _one_row("calibration", "ece", 0.1, 0.1)])
    base = pd.concat([_one_row("calibration", "temperature", 1.0, 1.0), _one_row("calibration", "ece", 0.1, 0.1)])
    assert compare(rows, base, [parse_compare_fail("calibration/*:0")]) == []


def test_identical_rerun_passes():
    base = _rows()
    checks = [parse_compare_fail(t) for t in ("top1:0", "ece:0%", "mcm_fpr95:0", "facet/max_disparity@1:0")]
    assert compare(_rows(run_id="cur"), base, checks) == []
    outcomes = run_gates(_rows(run_id="cur"), base, checks)
    assert all(o.passed for o in outcomes)
    assert outcomes[0].details == ["2 matched row(s) within the threshold"]


def test_planted_regression_fails_with_clear_message():
    base = _rows()
    cur = _rows(run_id="cur", overrides={("tiny:b", "top1"): 0.65})
    regs = compare(cur, base, [parse_compare_fail("zeroshot/top1:0.01")])
    assert len(regs) == 1
    msg = str(regs[0])
    for part in (
        "zeroshot/top1",
        "tiny:b",
        "bnb-nf4",
        "synthimagenet",
        "0.65",
        "0.7",
        "0.01",
        "higher is better",
        "zeroshot/top1:0.01",
    ):
        assert part in msg, (part, msg)
    assert regs[0].worsening == pytest.approx(0.05)
    # Within a 10% relative threshold it passes (0.05 < 0.07).
    assert compare(cur, base, [parse_compare_fail("top1:10%")]) == []
    assert len(compare(cur, base, [parse_compare_fail("top1:5%")])) == 1


@pytest.mark.parametrize(
    "metric, worse, better",
    [
        ("ece", 0.08, 0.02),
        ("mcm_fpr95", 0.5, 0.3),
        ("max_disparity@1", -0.2, -0.05),
        ("max_disparity@1", 0.2, 0.05),
    ],
)
def test_directions_in_compare(metric, worse, better):
    base = _rows()
    check = [parse_compare_fail(f"{metric}:0.01")]
    assert len(compare(_rows(overrides={("tiny:a", metric): worse}), base, check)) == 1
    assert compare(_rows(overrides={("tiny:a", metric): better}), base, check) == []


def test_nan_current_is_a_regression_and_unmatched_rows_are_not():
    base = _rows()
    cur = _rows(overrides={("tiny:a", "ece"): float("nan")})
    regs = compare(cur, base, [parse_compare_fail("ece:1")])
    assert len(regs) == 1 and "not finite" in str(regs[0]) and math.isinf(regs[0].worsening)
    # tiny:b was deselected in the current run: nothing to compare, no failure.
    only_a = cur[cur.model == "tiny:a"].assign(value=lambda d: d["value"].fillna(0.05))
    assert compare(only_a, base, [parse_compare_fail("ece:0")]) == []
    # A NaN baseline is skipped.
    assert compare(_rows(), base.assign(value=np.nan), [parse_compare_fail("top1:0")]) == []


def test_load_baseline_from_store_and_files(tmp_path):
    base = _rows(run_id="base-20240101")
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.start_run("base-20240101", {})
        store.add_rows(base.to_dict(orient="records"))
        from_store = load_baseline("base-2024", store)
        assert len(from_store) == len(base)
        assert load_baseline("latest", store).equals(from_store)
        write_rows_csv(from_store, tmp_path / "results.csv")
        write_rows_json(from_store, tmp_path / "results.json")
    pd.testing.assert_frame_equal(load_baseline(tmp_path / "results.csv"), from_store)
    pd.testing.assert_frame_equal(load_baseline(str(tmp_path / "results.json")), from_store)
    pd.testing.assert_frame_equal(load_baseline(tmp_path), from_store)
    with pytest.raises(FileNotFoundError):
        load_baseline(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="no store"):
        load_baseline("some-run")


def test_empty_frames_compare_nothing():
    checks = [parse_compare_fail("top1:0")]
    assert compare(pd.DataFrame(), _rows(), checks) == []
    assert compare(_rows(), _rows().iloc[:0], checks) == []
    with pytest.raises(ValueError, match="Expected current rows with columns"):
        compare(_rows().drop(columns="model"), _rows(), checks)


def test_gate_outcome_str():
    assert str(GateOutcome("compare top1:0.01", False, ["x"])) == "FAIL compare top1:0.01"
