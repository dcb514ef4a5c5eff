"""Population statistics: paired tests of fp32 vs quantized values across models.

A quantizer is judged on a *population* of models, as in Slyman et al., "You
Never Know: Quantization Induces Inconsistent Biases in Vision-Language
Foundation Models" (Table 1, paired t-tests across eight CLIP models) and
Bouguerra et al., "Less Precise Can Be More Reliable". For one quantizer and one
metric (and one demographic group), model ``i`` gives a pair ``(r_i, q_i)``: its
fp32 reference value and its quantized value. Everything here works on the
differences ``d_i = q_i - r_i`` (positive = the quantized model scores higher).

This module imports neither torch nor pytest: arrays and DataFrames in, numbers
and DataFrames out.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import special as _special
from scipy import stats as _st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

__all__ = [
    "ALPHA",
    "BOOTSTRAP_RESAMPLES",
    "CONFIDENCE",
    "POWER",
    "VERDICTS",
    "GROUP_KEYS",
    "MIN_N",
    "STATS_COLUMNS",
    "bootstrap_indices",
    "mark",
    "min_detectable_effect",
    "paired_bootstrap_ci",
    "paired_bootstrap_mean_ci",
    "paired_test",
    "population_stats",
    "tost_paired",
    "verdict",
]

CONFIDENCE = 0.95
"""Confidence level of the reported intervals."""

MIN_N = 3
"""Fewest models for which a test is run; below it p and CI are NaN."""

ALPHA = 0.05
"""Level of the verdicts: the t-test's ``p < ALPHA`` is *different*, TOST's ``p_tost < ALPHA`` *equivalent*;
TOST at level α is the ``1 - 2α`` (90%) CI lying inside ``±margin``."""

POWER = 0.80
"""Power of :func:`min_detectable_effect`: the mean Δ the paired t-test finds with this probability."""

VERDICTS = ("different", "equivalent", "inconclusive")
"""A finding's verdict (:func:`verdict`); ``""`` when the population is below :data:`MIN_N`."""

GROUP_KEYS = ("quantizer", "benchmark", "dataset", "metric", "subgroup")
"""One paired test per combination of these columns of the result rows."""

_TEST_KEYS = (
    "n",
    "mean_ref",
    "mean_q",
    "mean_diff",
    "ci_low",
    "ci_high",
    "t",
    "p",
    "p_wilcoxon",
    "cohens_dz",
    "margin",
    "p_tost",
    "ci90_low",
    "ci90_high",
    "verdict",
    "mde",
    "n_up",
    "n_down",
    "n_same",
    "note",
)
STATS_COLUMNS = (*GROUP_KEYS, *_TEST_KEYS, "p_holm", "p_bh", "mark")
"""Columns of :func:`population_stats`, in order."""

_EXCLUDED_STATUS = ("skipped", "error")


def mark(p: float) -> str:
    """Significance mark of the paper's tables: ``'**'`` p < .05, ``'*'`` p < .10, else ``''``.

    >>> [mark(x) for x in (0.01, 0.07, 0.5, float("nan"))]
    ['**', '*', '', '']
    """
    if p is None or not np.isfinite(p):
        return ""
    return "**" if p < 0.05 else "*" if p < 0.10 else ""


def _as_vector(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"Expected `{name}` to be one-dimensional, but got shape {arr.shape}")
    return arr


def tost_paired(d, margin) -> dict:
    """Two one-sided paired t-tests (TOST, Schuirmann 1987) of ``|mean Δ| < margin``, vectorised.

    ``d``: differences ``[..., n]`` (one population per leading index, NaN-free); ``margin`` > 0,
    a scalar or broadcastable to the leading shape. With ``d̄``, ``s_d`` (ddof = 1) and
    ``se = s_d / √n``, ``t_L = (d̄ + m) / se`` tests H0 ``μ ≤ −m`` and ``t_U = (d̄ − m) / se`` tests
    H0 ``μ ≥ m``, each one-sided with ``n − 1`` degrees of freedom:

    * ``p_tost = max(P(T ≥ t_L), P(T ≤ t_U))`` (equal to ``statsmodels.stats.weightstats.ttost_paired``);
    * ``ci90_low, ci90_high = d̄ ∓ t_{1−α, n−1} · se``: the ``1 − 2α`` CI; ``p_tost < α`` exactly when
      it lies inside ``(−m, m)``.

    Without variance (``se = 0``) the tests are decided by ``|d̄| < m`` (p 0 or 1). Returns arrays (0-d for
    one population) under the keys ``p_tost``, ``ci90_low``, ``ci90_high``.

    >>> r = tost_paired([0.001, -0.002, 0.0, 0.003, -0.001], 0.01)
    >>> round(float(r["p_tost"]), 5), bool(r["ci90_high"] < 0.01)
    (0.00017, True)
    """
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    m = np.asarray(margin, dtype=float)
    mean = d.mean(axis=-1)
    se = d.std(axis=-1, ddof=1) / math.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_low = np.where(se > 0, (mean + m) / se, np.where(mean + m > 0, np.inf, -np.inf))
        t_high = np.where(se > 0, (mean - m) / se, np.where(mean - m < 0, -np.inf, np.inf))
    p_low = _special.stdtr(n - 1, -t_low)  # P(T >= t_L)
    p_high = _special.stdtr(n - 1, t_high)  # P(T <= t_U)
    half = _special.stdtrit(n - 1, 1.0 - ALPHA) * se
    return {"p_tost": np.maximum(p_low, p_high), "ci90_low": mean - half, "ci90_high": mean + half}


@lru_cache(maxsize=512)
def _mde_effect_size(n: int, alpha: float, power: float) -> float:
    return float(TTestPower().solve_power(nobs=n, alpha=alpha, power=power, alternative="two-sided"))


def min_detectable_effect(n: int, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true mean Δ the two-sided paired t-test at ``alpha`` detects with probability ``power``.

    ``mde = d_z · s_d`` with ``d_z`` the standardised effect size (Cohen's d_z) that
    ``statsmodels.stats.power.TTestPower().solve_power(nobs=n, alpha=alpha, power=power)`` returns
    (noncentral t, n − 1 degrees of freedom; Cohen 1988) and ``s_d`` the spread of the differences.
    NaN below :data:`MIN_N` models or without a finite spread; 0 when the differences have no spread.

    >>> round(min_detectable_effect(8, 0.01), 4)  # eight models, sd of Δ one point: 1.2 points
    0.0116
    """
    if n < MIN_N or not math.isfinite(sd):
        return math.nan
    return _mde_effect_size(int(n), float(alpha), float(power)) * float(sd)


def verdict(p: float, p_tost: float, n: int) -> str:
    """``different`` when the t-test's ``p < ALPHA``, else ``equivalent`` when TOST's ``p_tost < ALPHA``, else
    ``inconclusive``; ``""`` below :data:`MIN_N` models. A difference that is significant *and* inside the
    margin reads ``different`` (it is real, however small: ``p_tost`` in ``stats.csv`` says it is small).

    >>> verdict(0.01, 0.001, 8), verdict(0.4, 0.01, 8), verdict(0.4, 0.2, 8), verdict(0.4, 0.01, 2)
    ('different', 'equivalent', 'inconclusive', '')
    """
    if n < MIN_N:
        return ""
    if math.isfinite(p) and p < ALPHA:
        return "different"
    if math.isfinite(p_tost) and p_tost < ALPHA:
        return "equivalent"
    return "inconclusive"


BOOTSTRAP_RESAMPLES = 1000
"""Resamples of :func:`paired_bootstrap_ci` unless told otherwise."""


def bootstrap_indices(n: int, n_boot: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> np.ndarray:
    """``[n_boot, n]`` indices drawn with replacement from ``range(n)`` by ``numpy.random.default_rng(seed)``:
    the resamples every paired bootstrap here uses (the same rows for the fp32 and the quantized model).

    >>> bootstrap_indices(4, 2, seed=1).shape
    (2, 4)
    """
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _percentile_ci(values: np.ndarray, confidence: float, axis: int = 0) -> tuple:
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha], axis=axis)
    return lo, hi


def paired_bootstrap_ci(statistic: Callable[[np.ndarray], float], n: int, n_boot: int = BOOTSTRAP_RESAMPLES,
                        seed: int = 0, confidence: float = CONFIDENCE, max_nan: float = 0.1) -> tuple[float, float]:
    """Percentile bootstrap CI (Efron & Tibshirani 1993) of a paired Δ over ``n`` evaluation samples.

    ``statistic(idx)`` computes Δ = metric(quantized) − metric(fp32) on the samples ``idx`` (a resample
    with replacement; the *same* indices for both models, so what the two share cancels, as in a paired
    test). The CI is the ``(1 − confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of Δ over the
    :func:`bootstrap_indices` resamples: seeded, so a cell gives the same interval every run. Resamples whose
    Δ is NaN (a metric undefined on that resample, e.g. no qualifying class) are left out; with more than
    ``max_nan`` of them the CI is NaN. A ``statistic`` that returns several Δs (an array) gets one CI each:
    ``(lo, hi)`` are then arrays, from the same resamples.

    >>> d = np.array([0.0, 1.0] * 50)
    >>> lo, hi = paired_bootstrap_ci(lambda idx: d[idx].mean(), d.size, n_boot=500)
    >>> bool(lo < 0.5 < hi), (lo, hi) == paired_bootstrap_ci(lambda idx: d[idx].mean(), d.size, n_boot=500)
    (True, True)
    """
    if n < 2:
        return math.nan, math.nan
    values = np.array([statistic(idx) for idx in bootstrap_indices(n, n_boot, seed)], dtype=float)
    if values.ndim == 1:
        return _ci_without_nan(values, confidence, max_nan)
    pairs = [_ci_without_nan(values[:, j], confidence, max_nan) for j in range(values.shape[1])]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def _ci_without_nan(values: np.ndarray, confidence: float, max_nan: float) -> tuple[float, float]:
    ok = np.isfinite(values)
    if not ok.any() or ok.mean() < 1.0 - max_nan:
        return math.nan, math.nan
    lo, hi = _percentile_ci(values[ok], confidence)
    return float(lo), float(hi)


def paired_bootstrap_mean_ci(d, n_boot: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                             confidence: float = CONFIDENCE) -> tuple:
    """:func:`paired_bootstrap_ci` of the mean of per-sample paired differences ``d`` (``[n]``, or ``[S, n]``
    for S datasets at once), vectorised: each resample's mean is ``counts @ d / n`` with ``counts`` the
    multiplicities of :func:`bootstrap_indices` for ``[S, n]`` (the same resamples as the loop; for ``[n]``
    the resample means are computed as the loop does, so the interval is identical).
    For top-1: ``d_i = [quantized right on i] − [fp32 right on i]``. Returns ``(lo, hi)``, floats or ``[S]``.

    >>> d = np.array([0.0, 1.0] * 50)
    >>> lo, hi = paired_bootstrap_mean_ci(d, n_boot=500)
    >>> (lo, hi) == paired_bootstrap_ci(lambda idx: d[idx].mean(), d.size, n_boot=500)
    True
    """
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    if n < 2:
        nan = np.full(d.shape[:-1], math.nan)
        return (math.nan, math.nan) if d.ndim == 1 else (nan, nan)
    idx = bootstrap_indices(n, n_boot, seed)
    if d.ndim == 1:  # the resamples' means as the loop computes them (chunked: memory n_boot/10 × n)
        means = np.concatenate([d[chunk].mean(axis=1) for chunk in np.array_split(idx, 10)])
        lo, hi = _percentile_ci(means, confidence)
        return float(lo), float(hi)
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.repeat(np.arange(n_boot), n), idx.ravel()), 1.0)
    means = counts @ d.reshape(-1, n).T / n  # [n_boot, S]
    lo, hi = _percentile_ci(means, confidence, axis=0)
    return lo.reshape(d.shape[:-1]), hi.reshape(d.shape[:-1])


def paired_test(reference, value, margin: float = math.nan) -> dict:
    """Paired comparison of quantized ``value`` against fp32 ``reference`` over models.

    Pairs where either side is not finite are dropped; ``n`` counts the rest.
    With ``d_i = value_i - reference_i``, ``d̄`` its mean and ``s_d`` its sample
    standard deviation (ddof = 1):

    * ``t = d̄ / (s_d / √n)``, ``p`` two-sided with ``n - 1`` degrees of freedom
      (``scipy.stats.ttest_rel(value, reference)``, Student 1908);
    * ``ci_low, ci_high = d̄ ∓ t_{0.975, n-1} · s_d / √n``, the 95% CI of the mean
      difference (equal to ``ttest_rel(...).confidence_interval()``);
    * ``p_wilcoxon``: Wilcoxon signed-rank test on ``d`` (scipy defaults: zero
      differences dropped, exact distribution for small n without ties); NaN when
      every difference is zero;
    * ``cohens_dz = d̄ / s_d`` (Cohen 1988, effect size for paired samples);
    * ``n_up, n_down, n_same``: models whose value rose, fell, stayed equal;
    * ``margin``, ``p_tost``, ``ci90_low``, ``ci90_high``: the equivalence test of :func:`tost_paired` against
      ``±margin`` (NaN without a margin); ``verdict``: :func:`verdict`;
    * ``mde``: :func:`min_detectable_effect` for this n and ``s_d``, the mean Δ the t-test would have
      found with 80% power.

    When ``n < 3`` the tests are not run: ``t``, ``p``, ``p_wilcoxon``, the CI and
    ``cohens_dz`` are NaN and ``note`` is ``"n too small"``. When every difference
    is identical (no variance), ``note`` says so (``t`` is then ±inf or NaN, as scipy returns).

    >>> r = paired_test([0.50, 0.60, 0.70, 0.80], [0.49, 0.58, 0.69, 0.77])
    >>> r["n"], round(r["mean_diff"], 4), r["n_down"]
    (4, -0.0175, 4)
    """
    ref = _as_vector(reference, "reference")
    q = _as_vector(value, "value")
    if ref.shape != q.shape:
        raise ValueError(
            f"Expected `reference` and `value` of the same length, but got {ref.size} and {q.size}"
        )
    keep = np.isfinite(ref) & np.isfinite(q)
    ref, q = ref[keep], q[keep]
    d = q - ref
    n = int(d.size)
    nan = math.nan
    out = {
        "n": n,
        "mean_ref": float(ref.mean()) if n else nan,
        "mean_q": float(q.mean()) if n else nan,
        "mean_diff": float(d.mean()) if n else nan,
        "ci_low": nan,
        "ci_high": nan,
        "t": nan,
        "p": nan,
        "p_wilcoxon": nan,
        "cohens_dz": nan,
        "margin": float(margin) if margin is not None and math.isfinite(margin) and margin > 0 else nan,
        "p_tost": nan,
        "ci90_low": nan,
        "ci90_high": nan,
        "verdict": "",
        "mde": nan,
        "n_up": int((d > 0).sum()),
        "n_down": int((d < 0).sum()),
        "n_same": int((d == 0).sum()),
        "note": "",
    }
    if n < MIN_N:
        out["note"] = "n too small"
        return out
    mean = d.mean()
    sd = d.std(ddof=1)
    se = sd / math.sqrt(n)
    # Student's t through scipy.special (what scipy.stats.t uses underneath, without its per-call
    # overhead: ~2 ms per test, seconds over a report's thousands of groups)
    half = float(_special.stdtrit(n - 1, 0.5 + CONFIDENCE / 2)) * se
    out["ci_low"], out["ci_high"] = float(mean - half), float(mean + half)
    with np.errstate(divide="ignore", invalid="ignore"):  # no variance: t = ±inf (p = 0) or NaN, as scipy
        t = np.float64(mean) / np.float64(se)
    out["t"], out["p"] = float(t), float(2.0 * _special.stdtr(n - 1, -abs(t))) if not np.isnan(t) else math.nan
    if sd > 0:
        out["cohens_dz"] = float(mean / sd)
    else:
        out["note"] = "differences have no variance"
    if np.any(d != 0):
        out["p_wilcoxon"] = _wilcoxon_p(d)
    tost = tost_paired(d, out["margin"] if math.isfinite(out["margin"]) else 1.0)
    out["ci90_low"], out["ci90_high"] = float(tost["ci90_low"]), float(tost["ci90_high"])
    if math.isfinite(out["margin"]):
        out["p_tost"] = float(tost["p_tost"])
    out["verdict"] = verdict(out["p"], out["p_tost"], n)
    out["mde"] = min_detectable_effect(n, float(sd))
    return out


def _wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided p of the Wilcoxon signed-rank test, equal to ``scipy.stats.wilcoxon(d).pvalue``.

    For n <= 13 scipy's default (zeros dropped, ``method='auto'``) is exact: the
    exact null distribution without ties, an exhaustive sign-flip
    ``permutation_test`` with ties or zeros (about a second at n = 13). Both are
    the same enumeration, computed here vectorised: W+ = Σ ranks of the positive
    |d_i| (average ranks for ties, zeros dropped); its null distribution is W+
    over all 2^m sign assignments of the m non-zero ranks; p = min(1, 2·min(P(W ≤ w),
    P(W ≥ w))), with scipy's tolerance of 100 ulp for equal sums. Larger n calls scipy.
    """
    if d.size > 13:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return float(_st.wilcoxon(d).pvalue)
            except ValueError:
                return math.nan
    nonzero = d[d != 0]
    ranks = _st.rankdata(np.abs(nonzero))
    observed = float(ranks[nonzero > 0].sum())
    m = nonzero.size
    signs = (np.arange(2**m)[:, None] >> np.arange(m)[None, :]) & 1
    null = signs @ ranks
    gamma = abs(np.finfo(float).eps * 100 * observed)
    p_less = np.mean(null <= observed + gamma)
    p_greater = np.mean(null >= observed - gamma)
    return float(min(1.0, 2 * min(p_less, p_greater)))


def _adjust(p: pd.Series, method: str) -> pd.Series:
    """Multiple-comparison adjustment over the finite p values of ``p``; NaN stays NaN."""
    adjusted = pd.Series(np.nan, index=p.index, dtype=float)
    ok = p.notna() & np.isfinite(p.astype(float))
    if ok.any():
        adjusted[ok] = multipletests(p[ok].to_numpy(dtype=float), method=method)[1]
    return adjusted


Margins = Callable[[str, str, str], float]
"""``margin(benchmark, metric, subgroup)``: the equivalence margin of a finding, NaN for none."""


def population_stats(df: pd.DataFrame, margins: Margins | None = None) -> pd.DataFrame:
    """One paired test per (quantizer, benchmark, dataset, metric, subgroup) across models.

    Input: result rows (see :mod:`qclip.results`). Rows of the fp32 reference
    quantizer, rows of skipped/errored cells, and rows whose ``value`` or
    ``reference`` is not finite are left out. Within a group each model gives one
    pair ``(reference, value)`` (the mean, should a model appear twice), and
    :func:`paired_test` runs on those pairs.

    The whole table is one family of hypotheses for the adjusted p values:
    ``p_holm`` (Holm 1979, family-wise error) and ``p_bh`` (Benjamini & Hochberg
    1995, false discovery rate), both from ``statsmodels.stats.multitest.multipletests``
    over the finite p values. ``mark`` follows the *unadjusted* p, as the paper's
    tables do (``'**'`` p < .05, ``'*'`` p < .10); read it next to ``p_holm``.

    ``margins(benchmark, metric, subgroup)`` gives each group's equivalence margin (NaN: no TOST);
    the report and the controller pass :func:`qclip.expect.equivalence.margin_function`.
    """
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in STATS_COLUMNS})
    if df is None or df.empty:
        return empty
    data = df[df["quantizer"] != "fp32"]
    if "status" in data:
        data = data[~data["status"].isin(_EXCLUDED_STATUS)]
    value = pd.to_numeric(data["value"], errors="coerce")
    reference = pd.to_numeric(data["reference"], errors="coerce")
    data = data.assign(value=value, reference=reference)
    data = data[np.isfinite(data["value"]) & np.isfinite(data["reference"])]
    if data.empty:
        return empty
    # one aggregation for every (group, model) pair, then plain arrays per group: a pandas groupby per
    # group cost ~1 ms each, seconds at the end of every session with thousands of groups
    per_model = (data.groupby([*GROUP_KEYS, "model"], sort=True, dropna=False)[["reference", "value"]]
                 .mean().reset_index())
    ref, val = per_model["reference"].to_numpy(dtype=float), per_model["value"].to_numpy(dtype=float)
    groups = per_model.groupby(list(GROUP_KEYS), sort=False, dropna=False).indices
    records = []
    for key, idx in sorted(groups.items(), key=lambda kv: kv[1][0]):  # per_model is sorted by the keys
        keys = dict(zip(GROUP_KEYS, key, strict=True))
        margin = margins(keys["benchmark"], keys["metric"], keys["subgroup"]) if margins else math.nan
        records.append({**keys, **paired_test(ref[idx], val[idx], margin)})
    out = pd.DataFrame.from_records(records)
    out["p_holm"] = _adjust(out["p"], "holm")
    out["p_bh"] = _adjust(out["p"], "fdr_bh")
    out["mark"] = out["p"].map(mark)
    return out[list(STATS_COLUMNS)].reset_index(drop=True)
