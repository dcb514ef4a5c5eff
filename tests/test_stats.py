"""qclip.stats against independent references: scipy.stats and statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats as sst
from statsmodels.stats.multitest import multipletests

from qclip.stats import STATS_COLUMNS, mark, paired_test, population_stats

TOL = 1e-10

_finite = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False, width=64)


def _pairs(min_size=3, max_size=12):
    return st.integers(min_size, max_size).flatmap(
        lambda n: st.tuples(arrays(float, n, elements=_finite), arrays(float, n, elements=_finite))
    )


def _reference_ttest(ref, q):
    res = sst.ttest_rel(q, ref)
    ci = res.confidence_interval(0.95)
    return float(res.statistic), float(res.pvalue), float(ci.low), float(ci.high)


@pytest.mark.parametrize(
    "ref, q",
    [
        pytest.param([0.5, 0.6, 0.7, 0.8], [0.49, 0.58, 0.69, 0.77], id="all-down"),
        pytest.param(
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
            [0.12, 0.18, 0.33, 0.41, 0.5, 0.58, 0.74, 0.79],
            id="eight-models",
        ),
        pytest.param([1.0, 2.0, 3.0], [1.5, 1.0, 3.25], id="n3-mixed"),
    ],
)
def test_paired_test_matches_scipy(ref, q):
    r = paired_test(ref, q)
    t, p, lo, hi = _reference_ttest(np.asarray(ref), np.asarray(q))
    d = np.asarray(q) - np.asarray(ref)
    assert r["n"] == len(ref)
    assert r["mean_diff"] == pytest.approx(d.mean(), abs=TOL)
    assert r["mean_ref"] == pytest.approx(np.mean(ref), abs=TOL)
    assert r["mean_q"] == pytest.approx(np.mean(q), abs=TOL)
    assert r["t"] == pytest.approx(t, abs=TOL)
    assert r["p"] == pytest.approx(p, abs=TOL)
    assert r["ci_low"] == pytest.approx(lo, abs=TOL)
    assert r["ci_high"] == pytest.approx(hi, abs=TOL)
    assert r["p_wilcoxon"] == pytest.approx(float(sst.wilcoxon(d).pvalue), abs=TOL)
    assert r["cohens_dz"] == pytest.approx(d.mean() / d.std(ddof=1), abs=TOL)
    assert (r["n_up"], r["n_down"], r["n_same"]) == ((d > 0).sum(), (d < 0).sum(), (d == 0).sum())
    assert r["note"] == ""


@settings(max_examples=40, deadline=None)
@given(_pairs())
def test_paired_test_property(pair):
    ref, q = pair
    d = q - ref
    r = paired_test(ref, q)
    assert set(r) == set(STATS_COLUMNS[5:-3])
    assert r["n_up"] + r["n_down"] + r["n_same"] == r["n"] == len(d)
    if d.std(ddof=1) > 1e-6 * max(1.0, abs(d.mean())):
        t, p, lo, hi = _reference_ttest(ref, q)
        assert r["t"] == pytest.approx(t, rel=1e-9, abs=TOL)
        assert r["p"] == pytest.approx(p, rel=1e-9, abs=TOL)
        assert r["ci_low"] == pytest.approx(lo, rel=1e-9, abs=TOL)
        assert r["ci_high"] == pytest.approx(hi, rel=1e-9, abs=TOL)
        assert r["ci_low"] <= r["mean_diff"] <= r["ci_high"]
    if np.all(d == 0):
        assert math.isnan(r["p_wilcoxon"])
    elif np.unique(np.abs(d)).size == d.size and np.all(d != 0):
        # Ties and zeros make scipy run a slow permutation test: covered below.
        assert r["p_wilcoxon"] == pytest.approx(float(sst.wilcoxon(d).pvalue), abs=TOL)
    else:
        assert 0.0 < r["p_wilcoxon"] <= 1.0


@pytest.mark.parametrize(
    "d",
    [
        pytest.param([0.1, 0.1, 0.2, -0.1, 0.3, 0.1, 0.0, 0.2], id="ties-and-zero-n8"),
        pytest.param([0.0, 0.0, 0.5, -0.5, 0.5], id="mostly-ties"),
        pytest.param([0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, -0.1], id="n10-ties"),
        pytest.param([0.01, -0.02, 0.03, 0.0, 0.0, 0.0], id="zeros-no-ties"),
        pytest.param([0.3, 0.1, -0.2, 0.05] * 4, id="n16-asymptotic"),
    ],
)
def test_wilcoxon_with_ties_matches_scipy(d):
    d = np.asarray(d)
    r = paired_test(np.zeros_like(d), d)
    assert r["p_wilcoxon"] == pytest.approx(float(sst.wilcoxon(d).pvalue), abs=TOL)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_paired_test_n_too_small(n):
    r = paired_test(np.arange(n, dtype=float), np.arange(n, dtype=float) + 0.5)
    assert r["note"] == "n too small"
    assert r["n"] == n
    for key in ("p", "t", "ci_low", "ci_high", "p_wilcoxon", "cohens_dz"):
        assert math.isnan(r[key]), key


def test_paired_test_drops_non_finite_pairs():
    r = paired_test([0.1, np.nan, 0.3, 0.4, 0.5], [0.2, 0.2, np.inf, 0.5, 0.55])
    assert r["n"] == 3
    assert r["mean_diff"] == pytest.approx(np.mean([0.1, 0.1, 0.05]), abs=TOL)


def test_paired_test_all_zero_differences():
    r = paired_test([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert math.isnan(r["p_wilcoxon"]) and math.isnan(r["p"]) and math.isnan(r["cohens_dz"])
    assert r["n_same"] == 3 and r["note"] == "differences have no variance"


def test_paired_test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same length"):
        paired_test([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="one-dimensional"):
        paired_test([[1, 2]], [[1, 2]])


def test_false_positive_rate_under_null():
    rng = np.random.default_rng(12345)
    ref = rng.uniform(0.3, 0.9, size=(2000, 8))
    q = ref + rng.normal(0.0, 1.0, size=ref.shape)
    rate = np.mean([paired_test(r, v)["p"] < 0.05 for r, v in zip(ref, q, strict=True)])
    assert 0.02 <= rate <= 0.09


def test_planted_shift_is_detected():
    rng = np.random.default_rng(54321)
    ref = rng.uniform(0.3, 0.9, size=(500, 8))
    q = ref + 1.5 + rng.normal(0.0, 1.0, size=ref.shape)
    power = np.mean([paired_test(r, v)["p"] < 0.05 for r, v in zip(ref, q, strict=True)])
    assert power > 0.80


@pytest.mark.parametrize(
    "p, expected",
    [(0.01, "**"), (0.0499, "**"), (0.05, "*"), (0.09, "*"), (0.10, ""), (0.7, ""), (float("nan"), "")],
)
def test_mark(p, expected):
    assert mark(p) == expected


def _rows(n_models=6, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for model in [f"tiny:m{i}" for i in range(n_models)]:
        for metric, sub in [("max_disparity@1", "gender"), ("max_disparity@1", "skin_tone"), ("ece", "")]:
            ref = float(rng.uniform(0, 1))
            rows.append(
                dict(
                    model=model,
                    quantizer="fp32",
                    benchmark="b",
                    dataset="d",
                    metric=metric,
                    subgroup=sub,
                    value=ref,
                    reference=ref,
                    status="passed",
                )
            )
            for quant, shift in [("q4", 0.2), ("q8", 0.0)]:
                v = ref + shift + float(rng.normal(0, 0.05))
                rows.append(
                    dict(
                        model=model,
                        quantizer=quant,
                        benchmark="b",
                        dataset="d",
                        metric=metric,
                        subgroup=sub,
                        value=v,
                        reference=ref,
                        status="passed",
                    )
                )
    return pd.DataFrame(rows)


def test_population_stats_groups_and_adjusts():
    df = _rows()
    # Rows that must be ignored: non-finite values and an errored cell.
    junk = df.iloc[[1]].assign(model="tiny:nan", value=np.nan)
    err = df.iloc[[1]].assign(model="tiny:err", value=99.0, status="error")
    out = population_stats(pd.concat([df, junk, err], ignore_index=True))
    assert list(out.columns) == list(STATS_COLUMNS)
    assert len(out) == 6 and "fp32" not in set(out["quantizer"])
    assert (out["n"] == 6).all()

    for r in out.itertuples():
        sel = df[(df.quantizer == r.quantizer) & (df.metric == r.metric) & (df.subgroup == r.subgroup)]
        sel = sel.sort_values("model")
        assert r.p == pytest.approx(sst.ttest_rel(sel.value, sel.reference).pvalue, abs=TOL)
        assert r.mark == mark(r.p)
    ref_holm = multipletests(out["p"].to_numpy(), method="holm")[1]
    ref_bh = multipletests(out["p"].to_numpy(), method="fdr_bh")[1]
    np.testing.assert_allclose(out["p_holm"], ref_holm, atol=TOL)
    np.testing.assert_allclose(out["p_bh"], ref_bh, atol=TOL)
    assert (out.loc[out.quantizer == "q4", "mark"] == "**").all()


def test_population_stats_nan_p_excluded_from_family():
    df = _rows(n_models=6)
    few = _rows(n_models=2, seed=1).assign(benchmark="other")
    out = population_stats(pd.concat([df, few], ignore_index=True))
    small = out[out.benchmark == "other"]
    assert (small["note"] == "n too small").all()
    assert small["p_holm"].isna().all() and small["p_bh"].isna().all()
    big = out[out.benchmark == "b"]
    np.testing.assert_allclose(big["p_holm"], multipletests(big["p"].to_numpy(), method="holm")[1], atol=TOL)


def test_population_stats_empty():
    assert population_stats(pd.DataFrame()).empty
    out = population_stats(_rows().query("quantizer == 'fp32'"))
    assert out.empty and list(out.columns) == list(STATS_COLUMNS)
