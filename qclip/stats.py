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

import numpy as np
import pandas as pd
from scipy import special as _special
from scipy import stats as _st
from statsmodels.stats.multitest import multipletests

__all__ = [
    "CONFIDENCE",
    "GROUP_KEYS",
    "MIN_N",
    "STATS_COLUMNS",
    "mark",
    "paired_test",
    "population_stats",
]

CONFIDENCE = 0.95
"""Confidence level of the reported intervals."""

MIN_N = 3
"""Fewest models for which a test is run; below it p and CI are NaN."""

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


def paired_test(reference, value) -> dict:
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
    * ``n_up, n_down, n_same``: models whose value rose, fell, stayed equal.

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


def population_stats(df: pd.DataFrame) -> pd.DataFrame:
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
        records.append({**dict(zip(GROUP_KEYS, key, strict=True)), **paired_test(ref[idx], val[idx])})
    out = pd.DataFrame.from_records(records)
    out["p_holm"] = _adjust(out["p"], "holm")
    out["p_bh"] = _adjust(out["p"], "fdr_bh")
    out["mark"] = out["p"].map(mark)
    return out[list(STATS_COLUMNS)].reset_index(drop=True)
