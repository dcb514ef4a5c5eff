"""Equivalence (TOST), verdicts and power of qclip.stats: references (statsmodels, scipy) and simulations.

The simulations are vectorised (thousands of populations per call of :func:`qclip.stats.tost_paired`) and
seeded, so each test takes well under a second and gives the same numbers every run.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sst
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from qclip.stats import (
    ALPHA,
    MIN_N,
    STATS_COLUMNS,
    min_detectable_effect,
    paired_test,
    population_stats,
    tost_paired,
    verdict,
)

SIMULATIONS = 2000
# the Monte Carlo error of a rate near alpha over 2000 populations: the true rate is <= alpha (TOST is an
# exact level-alpha test at the margin); a seeded estimate may exceed it by sampling error only
_MC_SLACK = 2.58 * math.sqrt(ALPHA * (1 - ALPHA) / SIMULATIONS)


# --- references ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_tost_matches_statsmodels_ttost_paired(seed):
    r = np.random.default_rng(seed)
    n = int(r.integers(3, 30))
    ref = r.normal(0.5, 0.1, size=n)
    q = ref + r.normal(r.normal(0, 0.01), r.uniform(0.001, 0.02), size=n)
    margin = float(r.uniform(0.002, 0.03))
    ours = tost_paired(q - ref, margin)
    p_sm, _, _ = ttost_paired(q, ref, -margin, margin)
    assert float(ours["p_tost"]) == pytest.approx(p_sm, rel=1e-9, abs=1e-15)
    lo, hi = sst.ttest_1samp(q - ref, 0.0).confidence_interval(1 - 2 * ALPHA)
    assert (float(ours["ci90_low"]), float(ours["ci90_high"])) == pytest.approx((lo, hi), rel=1e-12)
    # TOST at alpha is the 90% CI inside the margin
    assert (float(ours["p_tost"]) < ALPHA) == (-margin < lo and hi < margin)


def test_tost_is_vectorised_over_populations():
    d = np.random.default_rng(1).normal(0, 0.01, size=(50, 9))
    many = tost_paired(d, 0.01)
    for i in range(0, 50, 7):
        one = tost_paired(d[i], 0.01)
        assert float(one["p_tost"]) == pytest.approx(float(many["p_tost"][i]), rel=1e-12)


def test_tost_without_variance_is_decided_by_the_mean():
    assert float(tost_paired(np.zeros(5), 0.01)["p_tost"]) == 0.0
    assert float(tost_paired(np.full(5, 0.02), 0.01)["p_tost"]) == 1.0
    assert float(tost_paired(np.full(5, -0.005), 0.01)["p_tost"]) == 0.0


@pytest.mark.parametrize("n", [3, 5, 8, 20, 60])
def test_min_detectable_effect_matches_statsmodels_power(n):
    sd = 0.013
    mde = min_detectable_effect(n, sd)
    power = TTestPower().power(effect_size=mde / sd, nobs=n, alpha=ALPHA, alternative="two-sided")
    assert power == pytest.approx(0.80, abs=1e-6)
    assert min_detectable_effect(n, 0.0) == 0.0
    assert math.isnan(min_detectable_effect(2, sd)) and math.isnan(min_detectable_effect(n, math.nan))


# --- simulations (the acceptance) --------------------------------------------------------------


@pytest.mark.parametrize("n, sd", [(3, 0.01), (8, 0.01), (8, 0.03), (30, 0.005)])
@pytest.mark.parametrize("sign", [1, -1])
def test_tost_false_equivalence_at_the_margin_is_at_most_alpha(n, sd, sign):
    """Planted true Δ = ±margin: equivalence is declared in <= alpha of 2,000 simulated populations."""
    margin = 0.01
    d = np.random.default_rng(100 * n + sign).normal(sign * margin, sd, size=(SIMULATIONS, n))
    rate = float(np.mean(tost_paired(d, margin)["p_tost"] < ALPHA))
    assert rate <= ALPHA + _MC_SLACK, rate
    # beyond the margin it falls further
    d_out = np.random.default_rng(7 + n).normal(sign * 1.5 * margin, sd, size=(SIMULATIONS, n))
    assert float(np.mean(tost_paired(d_out, margin)["p_tost"] < ALPHA)) <= rate + _MC_SLACK


def test_tost_declares_equivalence_under_no_change_with_enough_models():
    """Planted Δ = 0: with enough models (30, sd of Δ half the margin) equivalence in most populations."""
    margin = 0.01
    d = np.random.default_rng(3).normal(0.0, margin / 2, size=(SIMULATIONS, 30))
    assert float(np.mean(tost_paired(d, margin)["p_tost"] < ALPHA)) > 0.95
    # ... and with the verdicts, which put a significant t-test first: still most
    p = 2 * sst.t.sf(np.abs(d.mean(1) / (d.std(1, ddof=1) / np.sqrt(30))), 29)
    equivalent = (p >= ALPHA) & (tost_paired(d, margin)["p_tost"] < ALPHA)
    assert float(np.mean(equivalent)) > 0.90
    # with four models and a spread of 1.5 margins, rarely: the population is too small
    few = np.random.default_rng(4).normal(0.0, 1.5 * margin, size=(SIMULATIONS, 4))
    assert float(np.mean(tost_paired(few, margin)["p_tost"] < ALPHA)) < 0.10


@pytest.mark.parametrize("n", [4, 8, 25])
def test_a_true_mean_delta_of_the_mde_is_found_80_percent_of_the_time(n):
    sd = 0.01
    mde = min_detectable_effect(n, sd)
    d = np.random.default_rng(n).normal(mde, sd, size=(SIMULATIONS, n))
    t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(n))
    rejected = float(np.mean(2 * sst.t.sf(np.abs(t), n - 1) < ALPHA))
    assert rejected == pytest.approx(0.80, abs=0.03)


# --- paired_test / population_stats carry the new columns ---------------------------------------------------


def test_verdicts_of_paired_test():
    base = np.linspace(0.4, 0.8, 10)
    noise = np.random.default_rng(0).normal(0, 0.002, 10)
    assert paired_test(base, base - 0.05 + noise, 0.01)["verdict"] == "different"
    eq = paired_test(base, base + noise, 0.01)
    assert eq["verdict"] == "equivalent" and eq["p_tost"] < ALPHA and -0.01 < eq["ci90_low"] < eq["ci90_high"] < 0.01
    wide = paired_test(base[:4], base[:4] + np.array([0.03, -0.03, 0.02, -0.025]), 0.01)
    assert wide["verdict"] == "inconclusive" and wide["mde"] > 0.01
    no_margin = paired_test(base, base + noise)
    assert math.isnan(no_margin["p_tost"]) and no_margin["verdict"] == "inconclusive"
    assert math.isfinite(no_margin["ci90_low"]) and math.isfinite(no_margin["mde"])
    small = paired_test([0.5, 0.6], [0.5, 0.61], 0.01)
    assert small["verdict"] == "" and math.isnan(small["p_tost"]) and math.isnan(small["mde"])
    same = paired_test(base, base, 0.01)
    assert same["verdict"] == "equivalent" and same["p_tost"] == 0.0
    assert math.isnan(paired_test(base, base + noise, -1.0)["margin"])


def test_verdict_order():
    assert verdict(0.01, 0.01, 8) == "different"
    assert verdict(math.nan, 0.01, 8) == "equivalent"
    assert verdict(math.nan, math.nan, 8) == "inconclusive"
    assert verdict(0.0, 0.0, MIN_N - 1) == ""


def test_population_stats_asks_the_margin_of_each_group():
    rows = []
    r = np.random.default_rng(2)
    for model in range(8):
        for metric, sub, shift in (("top1", "", 0.0), ("max_disparity@1", "gender", 0.0)):
            bench = "zeroshot" if metric == "top1" else "facet"
            ref = float(r.uniform(0.4, 0.8))
            rows.append(dict(model=f"m{model}", quantizer="q", benchmark=bench, dataset="d", metric=metric,
                             subgroup=sub, reference=ref, value=ref + shift + float(r.normal(0, 0.001))))
    df = pd.DataFrame(rows)
    asked = []

    def margins(benchmark, metric, subgroup):
        asked.append((benchmark, metric, subgroup))
        return 0.02 if benchmark == "facet" else math.nan

    out = population_stats(df, margins)
    assert list(out.columns) == list(STATS_COLUMNS)
    assert sorted(asked) == [("facet", "max_disparity@1", "gender"), ("zeroshot", "top1", "")]
    facet = out[out["benchmark"] == "facet"].iloc[0]
    top1 = out[out["benchmark"] == "zeroshot"].iloc[0]
    assert facet["margin"] == 0.02 and facet["verdict"] == "equivalent" and facet["p_tost"] < ALPHA
    assert math.isnan(top1["margin"]) and math.isnan(top1["p_tost"]) and top1["verdict"] == "inconclusive"
    assert population_stats(df)["p_tost"].isna().all()


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 40), st.floats(1e-4, 0.05), st.floats(-0.05, 0.05), st.floats(1e-3, 0.05),
       st.integers(0, 2**16))
def test_property_tost_p_is_the_ci_inside_the_margin(n, sd, mu, margin, seed):
    d = np.random.default_rng(seed).normal(mu, sd, size=n)
    r = tost_paired(d, margin)
    inside = -margin < float(r["ci90_low"]) and float(r["ci90_high"]) < margin
    p = float(r["p_tost"])
    if abs(p - ALPHA) > 1e-9:
        assert (p < ALPHA) == inside
    assert 0.0 <= p <= 1.0
    # a wider margin never makes equivalence harder
    assert float(tost_paired(d, 2 * margin)["p_tost"]) <= p + 1e-12
