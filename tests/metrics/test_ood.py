"""Tests of qclip.metrics.ood against scikit-learn, torch and a direct FPR@95 transcription."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qclip.metrics import ood
from tests.metrics._inputs import CLASSIFICATION, OOD, MetricTester

sklearn_metrics = pytest.importorskip("sklearn.metrics")


# --- references --------------------------------------------------------------------------------


def _labels(ids: np.ndarray, oods: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[np.ones(ids.size), np.zeros(oods.size)], np.r_[ids, oods]


def _reference_auroc(ids, oods) -> float:
    y, s = _labels(ids, oods)
    return sklearn_metrics.roc_auc_score(y, s)


def _reference_aupr_in(ids, oods) -> float:
    y, s = _labels(ids, oods)
    return sklearn_metrics.average_precision_score(y, s)


def _reference_aupr_out(ids, oods) -> float:
    y, s = _labels(ids, oods)
    return sklearn_metrics.average_precision_score(1 - y, -s)


def _reference_fpr(ids, oods, tpr=0.95) -> float:
    """FORMATS.md, literally: the largest threshold keeping >= tpr of ID; share of OOD at or above it."""
    for t in sorted(set(ids.tolist()), reverse=True):
        if np.mean(ids >= t) >= tpr:
            return float(np.mean(oods >= t))
    raise AssertionError("unreachable: the smallest ID score keeps all ID samples")


tester = MetricTester()


# --- agreement ---------------------------------------------------------------------------------


@pytest.mark.parametrize("inputs", OOD)
def test_detection_metrics_match_references(inputs):
    ids, oods = inputs
    tester.run(ood.auroc, (ids, oods), _reference_auroc(ids, oods))
    tester.run(ood.aupr_in, (ids, oods), _reference_aupr_in(ids, oods))
    tester.run(ood.aupr_out, (ids, oods), _reference_aupr_out(ids, oods))
    tester.run(ood.fpr_at_tpr, (ids, oods), _reference_fpr(ids, oods))
    out = ood.ood_metrics(ids, oods)
    assert list(out) == ["auroc", "fpr95", "aupr_in", "aupr_out"]
    tester.assert_close(
        out,
        {
            "auroc": _reference_auroc(ids, oods),
            "fpr95": _reference_fpr(ids, oods),
            "aupr_in": _reference_aupr_in(ids, oods),
            "aupr_out": _reference_aupr_out(ids, oods),
        },
    )


@pytest.mark.parametrize("inputs", OOD)
@pytest.mark.parametrize("tpr", [0.5, 0.8, 0.9, 0.95, 0.99, 1.0])
def test_fpr_at_other_tpr_matches_transcription(inputs, tpr):
    assert ood.fpr_at_tpr(*inputs, tpr=tpr) == pytest.approx(_reference_fpr(*inputs, tpr), abs=1e-12)


@pytest.mark.parametrize("n_id", [1, 19, 20, 21, 100, 101])
def test_fpr_threshold_rank(n_id):
    ids = np.arange(n_id, dtype=float)  # distinct ID scores 0..n-1
    m = int(np.ceil(0.95 * n_id - 1e-9))  # the m-th largest ID score is the threshold
    threshold = ids[::-1][m - 1]
    oods = np.array([threshold - 0.5, threshold, threshold + 0.5])
    assert ood.fpr_at_tpr(ids, oods) == pytest.approx(2 / 3)  # at or above: 2 of 3


@pytest.mark.parametrize("inputs", CLASSIFICATION)
@pytest.mark.parametrize("T", [1.0, 0.1, 3.0])
def test_scores_match_torch(inputs, T):
    torch = pytest.importorskip("torch")
    lg = torch.from_numpy(inputs.logits)
    cos = lg / 100.0
    tester.run(ood.mcm_score, (cos.numpy(),), torch.softmax(cos / T, dim=1).max(dim=1).values.numpy(), T=T)
    tester.run(ood.msp_score, (inputs.logits,), torch.softmax(lg, dim=1).max(dim=1).values.numpy())
    tester.run(ood.max_logit_score, (inputs.logits,), lg.max(dim=1).values.numpy())
    ref_energy = (T * torch.logsumexp(lg / T, dim=1)).numpy()
    MetricTester(atol=1e-6 * max(1.0, float(np.abs(ref_energy).max()))).run(
        ood.energy_score, (inputs.logits,), ref_energy, T=T
    )


def test_energy_is_stable_for_large_logits():
    assert ood.energy_score(np.array([[1000.0, 1000.0]]))[0] == pytest.approx(1000.0 + np.log(2.0))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ood.auroc(np.zeros((2, 2)), np.zeros(3)), "Expected `id_scores` to be a 1-D array"),
        (lambda: ood.auroc(np.zeros(2), np.array([])), "Expected `ood_scores` to be non-empty"),
        (lambda: ood.fpr_at_tpr(np.zeros(2), np.zeros(2), tpr=0.0), "Expected `tpr` to lie in"),
        (lambda: ood.fpr_at_tpr(np.zeros(2), np.zeros(2), tpr=1.5), "Expected `tpr` to lie in"),
        (lambda: ood.mcm_score(np.zeros((2, 2)), T=0.0), "Expected `T` to lie in"),
        (lambda: ood.energy_score(np.zeros(2)), "Expected `logits` to be a 2-D array"),
        (lambda: ood.ood_metrics(np.array([np.inf]), np.zeros(2)), "Expected `id_scores` to be finite"),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# --- properties --------------------------------------------------------------------------------

_scores = st.builds(
    lambda n, seed, loc, ints: (
        np.random.default_rng(seed).integers(0, 5, size=n).astype(float)
        if ints
        else np.random.default_rng(seed).normal(loc, 1.0, size=n)
    ),
    n=st.integers(1, 60),
    seed=st.integers(0, 2**16),
    loc=st.floats(-2.0, 2.0),
    ints=st.booleans(),
)


@settings(max_examples=50, deadline=None)
@given(_scores, _scores)
def test_property_bounds_symmetry_and_monotone_invariance(ids, oods):
    m = ood.ood_metrics(ids, oods)
    assert all(0.0 <= v <= 1.0 for v in m.values())
    assert ood.auroc(oods, ids) == pytest.approx(1.0 - m["auroc"], abs=1e-12)
    # strictly increasing transforms change nothing (they keep the order and the ties)
    for f in (np.exp, lambda x: x**3 + x, lambda x: 2.0 * x - 7.0):
        assert ood.ood_metrics(f(ids), f(oods)) == pytest.approx(m, abs=1e-9)
    # permuting within each set changes nothing
    assert ood.ood_metrics(ids[::-1], np.roll(oods, 1)) == pytest.approx(m, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(_scores, _scores)
def test_property_separable_scores(ids, oods):
    ids = ids - ids.min() + oods.max() + 1.0  # every ID above every OOD
    m = ood.ood_metrics(ids, oods)
    assert m["auroc"] == 1.0 and m["aupr_in"] == 1.0 and m["aupr_out"] == 1.0 and m["fpr95"] == 0.0
    m = ood.ood_metrics(-ids, -oods)  # every ID below every OOD
    assert m["auroc"] == 0.0 and m["fpr95"] == 1.0
