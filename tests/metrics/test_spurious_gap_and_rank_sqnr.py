"""Relative spurious gap, added vulnerability (qclip.metrics.spurious_gap) and the per-rank SQNR and rank-band
accuracy of qclip.metrics.spectral, against plain implementations written from the definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qclip.metrics import spectral as sp
from qclip.metrics import spurious_gap as sg

acc = st.floats(0.0, 1.0, allow_nan=False)
pos_acc = st.floats(0.01, 1.0, allow_nan=False)


# --- spurious gap -------------------------------------------------------------------------------
def _plain(fn, fc, qn, qc):
    rsg = lambda n, c: (n - c) / n  # noqa: E731  (the study's definition, written out)
    delta = lambda f, q: (f - q) / f  # noqa: E731
    return {"rsg_ref": rsg(fn, fc), "rsg_q": rsg(qn, qc), "delta_rsg": rsg(qn, qc) - rsg(fn, fc),
            "delta_normal": delta(fn, qn), "delta_counter": delta(fc, qc), "vuln_add": delta(fc, qc) - delta(fn, qn)}


def test_summary_matches_the_plain_definitions_on_shared_random_inputs():
    rng = np.random.default_rng(0)
    for fn, fc, qn, qc in rng.uniform(0.05, 1.0, size=(200, 4)):
        got = sg.spurious_gap_summary(fn, fc, qn, qc)
        want = _plain(fn, fc, qn, qc)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert sg.delta_rsg(fn, fc, qn, qc) == pytest.approx(want["delta_rsg"], abs=1e-12)
        assert sg.added_vulnerability(fn, fc, qn, qc) == pytest.approx(want["vuln_add"], abs=1e-12)


@given(pos_acc, acc)
def test_rsg_bounds_and_zero_when_both_splits_score_the_same(a_n, a_c):
    assert sg.relative_spurious_gap(a_n, a_n) == 0.0
    r = sg.relative_spurious_gap(a_n, a_c)
    assert r <= 1.0 and (r >= 0) == (a_c <= a_n)


@given(pos_acc, pos_acc)
def test_identical_models_add_nothing(a_n, a_c):
    s = sg.spurious_gap_summary(a_n, a_c, a_n, a_c)
    assert s["delta_rsg"] == 0.0 and s["vuln_add"] == 0.0 and s["delta_normal"] == 0.0 == s["delta_counter"]


@given(pos_acc, pos_acc, st.floats(0.1, 10.0))
def test_rsg_is_scale_invariant(a_n, a_c, k):
    # the gap is relative: scaling both accuracies by one factor leaves it (within [0, 1])
    if a_n * k <= 1 and a_c * k <= 1:
        assert sg.relative_spurious_gap(a_n * k, a_c * k) == pytest.approx(sg.relative_spurious_gap(a_n, a_c), abs=1e-9)


def test_undefined_and_bad_inputs():
    assert math.isnan(sg.relative_spurious_gap(0.0, 0.0))
    with pytest.raises(ValueError, match="acc_counter"):
        sg.relative_spurious_gap(0.5, 1.5)
    with pytest.raises(TypeError, match="acc_normal"):
        sg.relative_spurious_gap(float("nan"), 0.5)


# --- per-rank SQNR and rank-band accuracy ---------------------------------------------------------
def _plain_sqnr(x, y):
    xc, yc = x - x.mean(0), y - y.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    rank = np.linalg.matrix_rank(xc)
    out = []
    for i in range(rank):
        noise = float(np.sum(((yc - xc) @ vt[i]) ** 2))
        out.append(math.inf if noise == 0 else 10 * math.log10(s[i] ** 2 / noise))
    return np.array(out)


@pytest.mark.parametrize("n, d", [(40, 8), (10, 32), (64, 64)])
def test_per_rank_sqnr_matches_a_loop(n, d):
    rng = np.random.default_rng(n * d)
    x = rng.normal(size=(n, d)) * np.linspace(5, 0.2, d)
    y = x + rng.normal(scale=0.05, size=x.shape)
    np.testing.assert_allclose(sp.per_rank_sqnr(x, y), _plain_sqnr(x, y), rtol=1e-9)


def test_low_pass_noise_gives_an_sqnr_that_decays_with_rank():
    # uniform noise on a spectrum that decays: the top ranks keep a high SQNR, the tail drowns
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 16)) * np.geomspace(10, 0.1, 16)
    sqnr = sp.per_rank_sqnr(x, x + rng.normal(scale=0.05, size=x.shape))
    assert sqnr[0] > sqnr[7] > sqnr[-1] and sqnr[0] - sqnr[-1] > 30


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 30), st.integers(2, 8), st.integers(0, 2**16))
def test_per_rank_sqnr_is_infinite_for_identical_features(n, d, seed):
    x = np.random.default_rng(seed).normal(size=(n, d))
    s = sp.per_rank_sqnr(x, x)
    assert s.size == min(n - 1, d) and np.all(np.isposinf(s))


def _plain_band_accuracy(x, f, w, y, bands):
    _, s, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    rank = np.linalg.matrix_rank(x - x.mean(0))
    out = []
    for lo, hi in bands:
        idx = [i for i in range(rank) if math.ceil(lo * rank) <= i < math.ceil(hi * rank)]
        correct = 0
        for fi, yi in zip(f, y, strict=True):
            proj = sum(np.dot(fi, vt[i]) * vt[i] for i in idx)
            correct += int(np.argmax([np.dot(proj, wk) for wk in w]) == yi)
        out.append(correct / len(y))
    return np.array(out)


def test_rank_band_accuracy_matches_a_loop_and_the_full_band_is_plain_accuracy():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(5, 12))
    y = rng.integers(0, 5, size=60)
    x = w[y] * 2 + rng.normal(scale=0.7, size=(60, 12))
    bands = ((0.0, 0.25), (0.25, 0.5), (0.5, 1.0))
    np.testing.assert_allclose(sp.rank_band_accuracy(x, x, w, y, bands), _plain_band_accuracy(x, x, w, y, bands))
    full = sp.rank_band_accuracy(x, x, w, y, ((0.0, 1.0),))[0]
    assert full == pytest.approx(float(np.mean(np.argmax(x @ w.T, 1) == y)))  # rank 12 < 60: the full span
    top, tail = sp.rank_band_accuracy(x, x, w, y, ((0.0, 0.34), (0.67, 1.0)))
    assert top > tail  # the class signal lives in the top ranks


def test_rank_band_accuracy_checks_shapes():
    with pytest.raises(ValueError, match="one feature width"):
        sp.rank_band_accuracy(np.ones((4, 3)), np.ones((2, 2)), np.eye(2), [0, 1])


def _plain_band_means(x, bands):
    out = []
    for lo, hi in bands:
        vals = [v for i, v in enumerate(x) if math.ceil(lo * len(x)) <= i < math.ceil(hi * len(x)) and math.isfinite(v)]
        out.append(sum(vals) / len(vals) if vals else math.nan)
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(-100, 100), st.just(math.inf), st.just(math.nan)), min_size=0, max_size=40))
def test_band_means_match_a_loop_and_lie_within_the_band(values):
    got = sp.band_means(values, sp.DEFAULT_BANDS)
    ref = _plain_band_means(values, sp.DEFAULT_BANDS)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    for (lo, hi), m in zip(sp.DEFAULT_BANDS, got, strict=True):
        part = [v for i, v in enumerate(values) if math.ceil(lo * len(values)) <= i < math.ceil(hi * len(values))
                and math.isfinite(v)]
        assert math.isnan(m) if not part else min(part) - 1e-9 <= m <= max(part) + 1e-9


def test_sqnr_from_an_existing_analysis_is_per_rank_sqnr():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 12)) * np.geomspace(5, 0.1, 12)
    y = x + rng.normal(scale=0.05, size=x.shape)
    np.testing.assert_array_equal(sp.sqnr_from_analysis(sp.spectral_analysis(x, y)), sp.per_rank_sqnr(x, y))
