"""Tests of qclip.metrics.calibration against torchmetrics, scikit-learn and naive loops."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qclip.metrics import calibration as cal
from tests.metrics._inputs import CALIBRATION, CLASSIFICATION, MetricTester, make_classification, softmax

# --- references --------------------------------------------------------------------------------


def _reference_ce(probs: np.ndarray, labels: np.ndarray, n_bins: int, norm: str) -> float:
    """torchmetrics' MulticlassCalibrationError (float32 internally, extra bin for confidence 1.0)."""
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.classification")
    metric = tm.MulticlassCalibrationError(num_classes=probs.shape[1], n_bins=n_bins, norm=norm)
    return float(metric(torch.from_numpy(probs), torch.from_numpy(labels)))


def _reference_adaptive(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    """Loop: sort by (confidence, correctness); bins of size N//B + 1 for the first N % B, N//B after."""
    pairs = sorted(zip(conf.tolist(), correct.astype(int).tolist(), strict=True))
    n = len(pairs)
    sizes = [n // n_bins + 1] * (n % n_bins) + [n // n_bins] * (n_bins - n % n_bins)
    total, start = 0.0, 0
    for size in sizes:
        chunk = pairs[start : start + size]
        start += size
        if chunk:
            total += len(chunk) * abs(np.mean([c for _, c in chunk]) - np.mean([p for p, _ in chunk]))
    return total / n


def _reference_nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean([np.log(p[y]) for p, y in zip(probs, labels, strict=True)]))


def _reference_brier(probs: np.ndarray, labels: np.ndarray) -> float:
    sk = pytest.importorskip("sklearn.metrics")
    with warnings.catch_warnings():  # float32 probabilities sum to 1 only up to rounding
        warnings.simplefilter("ignore")
        return float(sk.brier_score_loss(labels, probs, labels=np.arange(probs.shape[1])))


tester = MetricTester()


# --- agreement ---------------------------------------------------------------------------------


@pytest.mark.parametrize("inputs", CALIBRATION)
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("n_bins", [5, 15])
def test_ece_matches_torchmetrics(inputs, norm, n_bins):
    ref = _reference_ce(inputs.logits, inputs.labels, n_bins, norm)
    tester.run(cal.ece, (inputs.logits, inputs.labels), ref, n_bins=n_bins, norm=norm)
    named = {"l1": None, "l2": cal.rms_ce, "max": cal.mce}[norm]
    if named is not None:
        tester.run(named, (inputs.logits, inputs.labels), ref, n_bins=n_bins)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_confidence_exactly_one_uses_torchmetrics_extra_bin(norm):
    probs = softmax(make_classification(60, 4, seed=8).logits).astype(np.float32)
    probs[:15] = np.eye(4, dtype=np.float32)[np.arange(15) % 4]  # confidence exactly 1.0
    labels = np.random.default_rng(8).integers(0, 4, size=60)
    ref = _reference_ce(probs, labels, 15, norm)
    assert cal.ece(probs, labels, 15, norm) == pytest.approx(ref, abs=1e-6)
    diagram = cal.reliability_diagram(probs.max(axis=1), probs.argmax(axis=1) == labels, 15)
    assert diagram["count"].iloc[-1] == 15 and diagram["lo"].iloc[-1] == 1.0


def _fma_capability() -> bool:
    """Whether torch's CPU kernels here are the FMA builds (AVX2/AVX512) that cal.bin_edges reproduces."""
    torch = pytest.importorskip("torch")
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def test_bin_edges_equal_torch_linspace():
    torch = pytest.importorskip("torch")
    if not _fma_capability():
        pytest.skip("torch's DEFAULT CPU kernels round linspace twice (no FMA); cal.bin_edges follows AVX2/AVX512")
    for n_bins in range(1, 2001):
        expected = torch.linspace(0, 1, n_bins + 1, dtype=torch.float).numpy()
        np.testing.assert_array_equal(cal.bin_edges(n_bins), expected, err_msg=f"n_bins={n_bins}")


@pytest.mark.parametrize("n_bins", [3, 5, 7, 10, 15, 20, 30, 100])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ece_at_exact_edge_values_matches_torchmetrics(n_bins, dtype):
    """Confidences exactly at every nominal edge k/n (0.6 with 10 bins was binned one bin lower before)."""
    torch = pytest.importorskip("torch")
    tmf = pytest.importorskip("torchmetrics.functional.classification")
    if not _fma_capability():
        pytest.skip("torchmetrics' edges come from torch's non-FMA DEFAULT kernels here")
    k = np.arange(1, n_bins)
    conf = np.concatenate([k / n_bins, k / n_bins, np.float32(k / n_bins).astype(np.float64)]).astype(dtype)
    correct = np.random.default_rng(n_bins).integers(0, 2, size=conf.size)
    for norm in ("l1", "l2", "max"):
        # torchmetrics' binary variant bins in the input's dtype, its multiclass one always in float32;
        # qclip follows the multiclass one, so the binary reference gets float32 confidences
        ref = float(
            tmf.binary_calibration_error(
                torch.from_numpy(conf.astype(np.float32)), torch.from_numpy(correct), n_bins=n_bins, norm=norm
            )
        )
        assert cal.ece(conf, correct, n_bins, norm) == pytest.approx(ref, abs=2e-6), norm
    # the same confidences as top labels of 2-class probabilities (conf >= 0.5 only)
    top = conf[conf >= 0.5]
    if top.size:
        probs = np.stack([top, 1.0 - top], axis=1).astype(dtype)
        labels = correct[: top.size] ^ 1  # label 1 wrong (conf is class 0's), label 0 right
        ref = _reference_ce(probs, labels, n_bins, "l1")
        assert cal.ece(probs, labels, n_bins) == pytest.approx(ref, abs=2e-6)


def test_confidence_six_tenths_lands_in_bin_six():
    d = cal.reliability_diagram(np.array([0.6, 0.6, 0.59]), np.array([1, 1, 0]), n_bins=10)
    assert d["count"].tolist() == [0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0]
    assert cal.ece(np.array([0.6]), np.array([1]), n_bins=10) == pytest.approx(0.4)


@pytest.mark.parametrize("inputs", CALIBRATION)
@pytest.mark.parametrize("n_bins", [1, 4, 15, 400])
def test_adaptive_ece_matches_loop(inputs, n_bins):
    probs = inputs.logits.astype(np.float64)
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == inputs.labels
    ref = _reference_adaptive(conf, correct, n_bins)
    tester.run(cal.adaptive_ece, (probs, inputs.labels), ref, n_bins=n_bins)
    tester.run(cal.adaptive_ece, (conf, correct), ref, n_bins=n_bins)


@pytest.mark.parametrize("inputs", CALIBRATION)
def test_nll_and_brier_match_references(inputs):
    probs = inputs.logits.astype(np.float64)
    tester.run(cal.nll, (probs, inputs.labels), _reference_nll(probs, inputs.labels))
    tester.run(cal.brier, (probs, inputs.labels), _reference_brier(probs, inputs.labels))


@pytest.mark.parametrize("inputs", CLASSIFICATION)
def test_calibration_metrics_matches_parts(inputs):
    torch = pytest.importorskip("torch")
    lg, lb = inputs
    out = cal.calibration_metrics(lg, lb)
    assert set(out) == {
        "ece",
        "adaptive_ece",
        "mce",
        "rms_ce",
        "nll",
        "brier",
        "accuracy",
        "mean_confidence",
        "overconfidence",
    }
    p = softmax(lg)
    conf, correct = p.max(axis=1), p.argmax(axis=1) == lb
    ref_nll = float(torch.nn.functional.cross_entropy(torch.from_numpy(lg), torch.from_numpy(lb)))
    # binned in float32 as torchmetrics does: confidences that round to 1.0 share its extra bin
    ce = {norm: _reference_ce(p.astype(np.float32), lb, 15, norm) for norm in ("l1", "max", "l2")}
    expected = {
        "ece": ce["l1"],
        "mce": ce["max"],
        "rms_ce": ce["l2"],
        "adaptive_ece": _reference_adaptive(conf, correct, 15),
        "nll": ref_nll,
        "brier": _reference_brier(p, lb),
        "accuracy": correct.mean(),
        "mean_confidence": conf.mean(),
        "overconfidence": conf.mean() - correct.mean(),
    }
    MetricTester(atol=2e-6).assert_close(out, expected)  # float64 vs torchmetrics' float32 binning
    assert cal.confidence_direction(conf, correct) == pytest.approx(out["overconfidence"], abs=1e-12)
    assert cal.nll(lg, lb, from_logits=True) == pytest.approx(ref_nll, abs=1e-9)


@pytest.mark.parametrize("inputs", CALIBRATION)
@pytest.mark.parametrize("n_bins", [3, 15])
def test_reliability_diagram_consistent_with_ece(inputs, n_bins):
    probs = inputs.logits.astype(np.float64)
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == inputs.labels
    d = cal.reliability_diagram(conf, correct, n_bins)
    assert list(d.columns) == ["bin", "lo", "hi", "count", "acc", "conf"]
    assert len(d) == n_bins + 1 and d["count"].sum() == conf.size
    nz = d[d["count"] > 0]
    assert ((nz["conf"] >= nz["lo"]) & ((nz["conf"] < nz["hi"]) | (nz["hi"] == 1.0))).all()
    ece = float(np.sum(nz["count"] / conf.size * np.abs(nz["acc"] - nz["conf"])))
    assert ece == pytest.approx(cal.ece(conf, correct, n_bins), abs=1e-12)


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_fit_temperature_recovers_the_scale(scale):
    r = np.random.default_rng(11)
    true_logits = 2.0 * r.normal(size=(4000, 6))
    p = softmax(true_logits)
    labels = (p.cumsum(axis=1) > r.random((4000, 1))).argmax(axis=1)  # labels drawn from the model itself
    t = cal.fit_temperature(scale * true_logits, labels)
    assert t == pytest.approx(scale, rel=0.1)

    # and it is a minimum of the NLL
    def nll_at(temp: float) -> float:
        return cal.nll(scale * true_logits / temp, labels, from_logits=True)

    assert nll_at(t) <= min(nll_at(t * 1.01), nll_at(t / 1.01))
    grid = np.geomspace(t / 1.5, t * 1.5, 61)
    assert nll_at(t) <= min(nll_at(g) for g in grid) + 1e-9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_near_zero_for_a_calibrated_predictor(seed):
    r = np.random.default_rng(seed)
    conf = r.uniform(0.3, 1.0, size=20_000)
    correct = r.random(20_000) < conf  # right with probability = confidence
    assert cal.ece(conf, correct) < 0.03
    assert cal.adaptive_ece(conf, correct) < 0.03
    assert abs(cal.confidence_direction(conf, correct)) < 0.02


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: cal.ece(np.array([0.5, 1.2]), np.array([1, 0])),
            r"Expected `probs` to be probabilities in \[0, 1\]",
        ),
        (
            lambda: cal.ece(np.array([0.5, 0.2]), np.array([2, 0])),
            "Expected `target` to hold booleans or 0/1",
        ),
        (
            lambda: cal.ece(np.array([0.5, 0.2]), np.array([1, 0]), n_bins=0),
            "Expected `n_bins` to be an integer",
        ),
        (lambda: cal.ece(np.array([0.5, 0.2]), np.array([1, 0]), norm="l3"), "Expected `norm` to be one of"),
        (lambda: cal.ece(np.full((2, 2), 0.5), np.array([0, 2])), r"Expected `target` to lie in \[0, 1\]"),
        (lambda: cal.ece(np.zeros((2, 2, 2)), np.array([0, 1])), "Expected `probs` to be a 1-D or 2-D array"),
        (lambda: cal.nll(np.full((2, 2), 0.5), np.array([0, 1]), eps=0.0), "Expected `eps` to lie in"),
        (lambda: cal.fit_temperature(np.zeros((2, 2)), np.array([0, 1]), bounds=(2.0, 1.0)), "bounds"),
        (
            lambda: cal.reliability_diagram(np.array([0.5]), np.array([1, 0])),
            "Expected `correct` to have length 1",
        ),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# --- properties --------------------------------------------------------------------------------

_cls = st.builds(
    make_classification,
    n=st.integers(1, 60),
    c=st.integers(2, 8),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.1, 20.0),
    signal=st.floats(0.0, 3.0),
)


@settings(max_examples=50, deadline=None)
@given(_cls, st.integers(1, 20), st.integers(0, 2**16))
def test_property_bounds_order_and_permutation(inputs, n_bins, seed):
    lg, lb = inputs
    m = cal.calibration_metrics(lg, lb, n_bins=n_bins)
    for key in ("ece", "adaptive_ece", "mce", "rms_ce", "accuracy", "mean_confidence"):
        assert 0.0 <= m[key] <= 1.0 + 1e-12, key
    assert m["ece"] <= m["rms_ce"] + 1e-12 <= m["mce"] + 2e-12  # weighted mean <= RMS <= max
    assert 0.0 <= m["brier"] <= 2.0 and m["nll"] >= 0.0
    perm = np.random.default_rng(seed).permutation(lg.shape[0])
    assert cal.calibration_metrics(lg[perm], lb[perm], n_bins=n_bins) == pytest.approx(m, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 80), st.integers(1, 12), st.integers(0, 2**16))
def test_property_adaptive_ece_permutation_invariant_with_ties(n, n_bins, seed):
    r = np.random.default_rng(seed)
    conf = r.integers(1, 5, size=n) / 4.0  # few distinct confidences: many ties across bin borders
    correct = r.random(n) < 0.5
    perm = r.permutation(n)
    a = cal.adaptive_ece(conf, correct, n_bins)
    assert a == pytest.approx(cal.adaptive_ece(conf[perm], correct[perm], n_bins), abs=1e-12)
    assert a == pytest.approx(_reference_adaptive(conf, correct, n_bins), abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 50), st.integers(2, 8), st.integers(0, 2**16))
def test_property_perfect_predictor(n, c, seed):
    lb = np.random.default_rng(seed).integers(0, c, size=n)
    probs = np.eye(c)[lb]
    assert cal.ece(probs, lb) == 0.0 and cal.brier(probs, lb) == 0.0
    assert cal.nll(probs, lb) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_label_matches_a_plain_softmax(seed):
    logits = np.random.default_rng(seed).normal(size=(40, 7)) * 5
    conf, pred = cal.top_label(logits)
    for n, row in enumerate(logits):
        e = [math.exp(v - max(row)) for v in row]
        assert conf[n] == pytest.approx(max(e) / sum(e), rel=1e-12)
        assert pred[n] == max(range(len(row)), key=lambda c: (row[c], -c))


@given(st.integers(1, 30), st.integers(2, 9), st.floats(-50, 50))
@settings(max_examples=40, deadline=None)
def test_top_label_bounds_and_shift_invariance(n, c, shift):
    logits = np.random.default_rng(n * c).normal(size=(n, c))
    conf, pred = cal.top_label(logits)
    assert np.all((conf >= 1.0 / c - 1e-12) & (conf <= 1.0))
    conf2, pred2 = cal.top_label(logits + shift)
    np.testing.assert_allclose(conf2, conf, rtol=1e-9)
    assert (pred2 == pred).all()


# --- logit-scale tuning --------------------------------------------------------------------------


def _reference_logit_scale(cosine: np.ndarray) -> tuple[float, object]:
    """A fine grid over log s of torch's symmetric cross-entropy (CLIP's loss), refined once."""
    torch = pytest.importorskip("torch")
    c = torch.from_numpy(cosine).double()
    target = torch.arange(c.shape[0])

    def loss(s: torch.Tensor) -> torch.Tensor:  # [G] losses, one per scale, as torch's cross_entropy computes them
        lg = s[:, None, None] * c
        ce = torch.nn.functional.cross_entropy
        g, n = lg.shape[0], c.shape[0]
        rows = ce(lg.reshape(g * n, n), target.repeat(g), reduction="none").reshape(g, n).mean(1)
        cols = ce(lg.transpose(1, 2).reshape(g * n, n), target.repeat(g), reduction="none").reshape(g, n).mean(1)
        return 0.5 * (rows + cols)

    grid = torch.linspace(math.log(1e-2), math.log(1e3), 4001, dtype=torch.float64)
    best = grid[int(loss(grid.exp()).argmin())]
    fine = torch.linspace(float(best) - 0.01, float(best) + 0.01, 2001, dtype=torch.float64)
    fine = fine.clamp(math.log(1e-2), math.log(1e3))
    return float(fine[int(loss(fine.exp()).argmin())].exp()), lambda v: float(loss(torch.tensor([v]).double())[0])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 12), sharp=st.floats(0.5, 3.0), seed=st.integers(0, 2**16))
def test_fit_logit_scale_matches_a_grid_over_torch_cross_entropy(n, sharp, seed):
    rng = np.random.default_rng(seed)
    c = np.clip(0.3 * rng.normal(size=(n, n)) + sharp * 0.3 * np.eye(n), -1, 1)
    got = cal.fit_logit_scale(c)
    ref, loss = _reference_logit_scale(c)
    assert loss(got) <= loss(ref) * (1 + 1e-5) + 1e-9  # as low a contrastive loss as the grid's best
    if 0.011 < ref < 10 and loss(ref) > 0.05:  # an interior optimum with curvature: the same point
        assert got == pytest.approx(ref, rel=2e-3)


def _contrastive_loop(c: np.ndarray, s: float) -> float:
    """CLIP's symmetric InfoNCE at logit scale ``s``, written as a plain loop over pairs."""
    n, total = c.shape[0], 0.0
    for i in range(n):
        total += math.log(sum(math.exp(s * c[i, j]) for j in range(n))) - s * c[i, i]
        total += math.log(sum(math.exp(s * c[j, i]) for j in range(n))) - s * c[i, i]
    return total / (2 * n)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 10), seed=st.integers(0, 2**16))
def test_fit_logit_scale_properties(n, seed):
    """Within the bounds; reordering the pairs reaches the same loss; symmetric similarities reach
    temperature scaling's loss (past a scale of ~40 the loss is flat, so losses are compared, not scales)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, size=(n, n))
    s = cal.fit_logit_scale(a)
    assert 1e-2 * (1 - 1e-6) <= s <= 1e3 * (1 + 1e-6)
    perm = rng.permutation(n)
    assert _contrastive_loop(a, cal.fit_logit_scale(a[perm][:, perm])) == pytest.approx(_contrastive_loop(a, s),
                                                                                         abs=1e-7)
    sym = (a + a.T) / 2
    t = cal.fit_temperature(sym, np.arange(n), bounds=(1e-3, 1e2))
    assert _contrastive_loop(sym, cal.fit_logit_scale(sym)) == pytest.approx(_contrastive_loop(sym, 1 / t), abs=1e-7)


def test_fit_logit_scale_extremes_and_errors():
    assert cal.fit_logit_scale(np.eye(4)) > 30  # perfectly separated pairs: sharp (the loss is ~0 past ~40)
    assert cal.fit_logit_scale(-np.eye(4) + 0.5) < 0.02  # the pairs are the least similar: as soft as allowed
    with pytest.raises(ValueError, match="square"):
        cal.fit_logit_scale(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="bounds"):
        cal.fit_logit_scale(np.eye(3), bounds=(2.0, 1.0))
