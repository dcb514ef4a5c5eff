"""Tests of qclip.metrics.spectral against a per-direction loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qclip.metrics import spectral as sp
from tests.metrics._inputs import SPECTRAL, MetricTester

# --- reference ---------------------------------------------------------------------------------


def _reference(ref: np.ndarray, q: np.ndarray, bands=sp.DEFAULT_BANDS) -> dict:
    """Loop over the reference's principal directions one at a time; singular values under numpy's
    ``matrix_rank`` tolerance count as zero, and a ratio over a zero one is NaN."""
    xc, yc = ref - ref.mean(axis=0), q - q.mean(axis=0)
    noise = yc - xc
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    rank = int(np.linalg.matrix_rank(xc))
    s = np.array([s[i] if i < rank else 0.0 for i in range(s.size)])
    noise_i = np.array([float(np.sum((noise @ vt[i]) ** 2)) for i in range(s.size)])
    band = []
    for lo, hi in bands:
        idx = [i for i in range(rank) if np.ceil(lo * rank) <= i < np.ceil(hi * rank)]
        band.append(sum(noise_i[i] for i in idx) / sum(s[i] ** 2 for i in idx))

    def erank(sv):
        sv = sv[: int(np.sum(sv > np.finfo(float).eps * sv.max() * max(ref.shape)))]
        p = sv[sv > 0] / sv.sum()
        return float(np.exp(-sum(pi * np.log(pi) for pi in p)))

    return {
        "singular_values": s,
        "energy": s**2 / np.sum(s**2),
        "noise_energy": noise_i,
        "nsr_per_rank": np.array([noise_i[i] / s[i] ** 2 if i < rank else np.nan for i in range(s.size)]),
        "band_nsr": np.array(band),
        "nsr_total": float(np.sum(noise**2) / np.sum(xc**2)),
        "effective_rank_ref": erank(s),
        "effective_rank_q": erank(np.linalg.svd(yc, compute_uv=False)),
    }


tester = MetricTester(atol=1e-8, rtol=1e-7)


# --- agreement ---------------------------------------------------------------------------------


@pytest.mark.parametrize("inputs", SPECTRAL)
def test_spectral_matches_loop(inputs):
    ref = _reference(*inputs)
    tester.run(sp.spectral_analysis, tuple(inputs), ref)
    out = sp.spectral_analysis(*inputs)
    for i, v in enumerate(ref["band_nsr"]):
        assert out[f"nsr_band_{i}"] == pytest.approx(v)
    assert 0.0 <= out["noise_outside_span"] <= 1.0
    rank = int(np.count_nonzero(out["singular_values"]))
    assert np.isfinite(out["nsr_per_rank"][:rank]).all() and np.isnan(out["nsr_per_rank"][rank:]).all()


def test_centring_makes_wide_features_rank_deficient():
    """N <= D: centring leaves N - 1 non-zero singular values; the last one is rounding noise, counted
    as zero, so no ratio over it blows up (it gave an NSR near 1e28 before)."""
    x = np.random.default_rng(5).normal(size=(10, 32))
    out = sp.spectral_analysis(x, x + 0.01 * np.random.default_rng(6).normal(size=x.shape))
    assert np.count_nonzero(out["singular_values"]) == 9
    assert np.isnan(out["nsr_per_rank"][9]) and np.nanmax(out["nsr_per_rank"]) < 1.0
    assert 0.0 < out["noise_outside_span"] < 1.0


def test_identical_features_have_zero_noise():
    x = np.random.default_rng(1).normal(size=(40, 8))
    out = sp.spectral_analysis(x, x.copy())
    assert out["nsr_total"] == 0.0 and out["mean_shift"] == 0.0 and out["noise_outside_span"] == 0.0
    assert (out["noise_energy"] == 0).all() and (out["band_nsr"] == 0).all()
    assert out["effective_rank_ref"] == out["effective_rank_q"]


def test_noise_along_the_top_direction_lands_in_the_top_band():
    r = np.random.default_rng(2)
    x = r.normal(size=(100, 10)) * np.geomspace(10, 1, 10)
    _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    q = x + 0.1 * r.normal(size=(100, 1)) * vt[0]
    out = sp.spectral_analysis(x, q)
    assert out["band_nsr"][0] > 0 and np.allclose(out["band_nsr"][1:], 0.0, atol=1e-20)


def test_mean_shift_is_not_noise():
    x = np.random.default_rng(3).normal(size=(30, 5))
    out = sp.spectral_analysis(x, x + np.array([1.0, 0, 0, 0, 0]))
    assert out["nsr_total"] == pytest.approx(0.0, abs=1e-20) and out["mean_shift"] > 0


def test_effective_rank_examples():
    assert sp.effective_rank(np.eye(5), center=False) == pytest.approx(5.0)
    assert sp.effective_rank(np.diag([1.0, 0.0, 0.0]), center=False) == pytest.approx(1.0)
    assert sp.effective_rank(np.zeros((4, 3))) == 0.0


def test_empty_band_is_nan():
    x = np.random.default_rng(4).normal(size=(5, 3))  # r = 3: the band (0, 0.1) has ceil(0.3) = 1 rank
    out = sp.spectral_analysis(x, x + 0.01, bands=((0.0, 0.1), (0.5, 0.6)))
    assert not np.isnan(out["band_nsr"][0])
    assert np.isnan(out["band_nsr"][1])  # ranks ceil(1.5) = 2 .. ceil(1.8) - 1 = 1: empty


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: sp.spectral_analysis(np.zeros((3, 2)), np.zeros((3, 3))),
            "Expected `q_feats` to have the shape",
        ),
        (lambda: sp.spectral_analysis(np.zeros((3, 2)), np.zeros((3, 2)), bands=((0.5, 0.2),)), "every band"),
        (lambda: sp.spectral_analysis(np.zeros(3), np.zeros(3)), "Expected `ref_feats` to be a 2-D array"),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# --- properties --------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(8, 40), st.integers(6, 16), st.integers(0, 2**16))
def test_property_effective_rank_at_most_rank(rank, n, d, seed):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, rank)) @ r.normal(size=(rank, d))  # rank <= r (before centring)
    e = sp.effective_rank(x)
    assert 0.0 <= e <= min(rank, n, d) + 1e-6
    assert sp.effective_rank(x, center=False) <= min(rank, n, d) + 1e-6


@settings(max_examples=30, deadline=None)
@given(
    st.integers(3, 30), st.integers(2, 10), st.floats(1e-3, 1.0), st.floats(0.1, 100.0), st.integers(0, 2**16)
)
def test_property_scale_invariance_and_bounds(n, d, noise, scale, seed):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, d))
    q = x + noise * r.normal(size=(n, d))
    a, b = sp.spectral_analysis(x, q), sp.spectral_analysis(scale * x, scale * q)
    for key in ("nsr_total", "effective_rank_ref", "effective_rank_q", "mean_shift"):
        assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-12)
    assert np.all(a["nsr_per_rank"][np.isfinite(a["nsr_per_rank"])] >= 0)
    assert a["energy"].sum() == pytest.approx(1.0)
    assert 1.0 - 1e-9 <= a["effective_rank_ref"] <= min(n, d) + 1e-6
