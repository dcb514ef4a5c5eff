"""Tests of qclip.metrics.agreement against plain loops (and scipy / torch where they have the formula),
Hypothesis properties, and the issue's planted permutation of two classes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from qclip.metrics import agreement as ag
from tests.metrics._inputs import make_classification

# --- plain references --------------------------------------------------------------------------------


def _ref_flips(r, q, y):
    flips = r2w = w2r = 0
    for i in range(len(y)):
        a = max(range(r.shape[1]), key=lambda c: (r[i, c], -c))  # first maximum
        b = max(range(q.shape[1]), key=lambda c: (q[i, c], -c))
        if a != b:
            flips += 1
            r2w += a == y[i]
            w2r += b == y[i]
    n = len(y)
    return {"flip_rate": flips / n, "flip_right_to_wrong": r2w / n, "flip_wrong_to_right": w2r / n}


def _ref_kl(r, q):
    total = 0.0
    for i in range(r.shape[0]):
        p = [math.exp(v) for v in r[i] - r[i].max()]
        s = [math.exp(v) for v in q[i] - q[i].max()]
        zp, zs = sum(p), sum(s)
        total += sum((a / zp) * math.log((a / zp) / (b / zs)) for a, b in zip(p, s, strict=True) if a > 0)
    return total / r.shape[0]


def _ref_cos(a, b):
    vals = []
    for x, y in zip(a, b, strict=True):
        nx, ny = math.sqrt(sum(v * v for v in x)), math.sqrt(sum(v * v for v in y))
        vals.append(0.0 if nx == 0 or ny == 0 else sum(u * v for u, v in zip(x, y, strict=True)) / (nx * ny))
    return sum(vals) / len(vals)


def _pair(seed, n=200, c=7, noise=0.5, scale=10.0):
    base = make_classification(n, c, seed, scale=scale)
    r = np.random.default_rng(seed + 1)
    return base.logits, base.logits + noise * r.normal(size=base.logits.shape), base.labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("noise", [0.0, 0.3, 3.0])
def test_flips_kl_and_cosine_match_plain_loops(seed, noise):
    r, q, y = _pair(seed, noise=noise)
    assert ag.prediction_flips(r, q, y) == pytest.approx(_ref_flips(r, q, y), abs=1e-15)
    assert ag.mean_kl_divergence(r, q) == pytest.approx(_ref_kl(r, q), rel=1e-9, abs=1e-12)
    emb_r = np.random.default_rng(seed).normal(size=(50, 16))
    emb_q = emb_r + noise * np.random.default_rng(seed + 9).normal(size=emb_r.shape)
    assert ag.mean_cosine_similarity(emb_r, emb_q) == pytest.approx(_ref_cos(emb_r, emb_q), rel=1e-12)
    out = ag.agreement_metrics(r, q, y, emb_r, emb_q)
    assert set(out) == {"flip_rate", "flip_right_to_wrong", "flip_wrong_to_right", "mean_kl", "embedding_cosine"}


def test_kl_matches_scipy_and_torch():
    torch = pytest.importorskip("torch")
    from scipy.special import rel_entr, softmax

    r, q, _ = _pair(5, noise=1.0)
    expected = float(np.mean(rel_entr(softmax(r, axis=1), softmax(q, axis=1)).sum(axis=1)))
    assert ag.mean_kl_divergence(r, q) == pytest.approx(expected, rel=1e-10)
    t = torch.nn.functional.kl_div(torch.log_softmax(torch.from_numpy(q), 1), torch.log_softmax(torch.from_numpy(r), 1),
                                   reduction="batchmean", log_target=True)
    assert ag.mean_kl_divergence(r, q) == pytest.approx(float(t), rel=1e-10)


def test_cosine_matches_torch():
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(0).normal(size=(40, 8))
    b = a + np.random.default_rng(1).normal(size=a.shape)
    t = torch.nn.functional.cosine_similarity(torch.from_numpy(a), torch.from_numpy(b), dim=1).mean()
    assert ag.mean_cosine_similarity(a, b) == pytest.approx(float(t), rel=1e-12)


def test_planted_permutation_of_two_classes_keeps_accuracy_and_flips_their_share():
    """A 'quantizer' that swaps the predictions of classes a and b without changing accuracy: the flip rate
    equals the share of samples predicted a or b, right→wrong equals wrong→right."""
    r = np.random.default_rng(0)
    c, a, b = 6, 1, 4
    # (predicted, label) counts among classes a and b: right before = 30 + 25 = right after = 20 + 35
    blocks = [(a, a, 30), (a, b, 20), (b, b, 25), (b, a, 35)]
    pred = np.concatenate([np.full(k, p) for p, _, k in blocks])
    labels = np.concatenate([np.full(k, y) for _, y, k in blocks])
    others = np.array([0, 2, 3, 5])
    rest_pred = others[r.integers(0, 4, size=200)]
    rest_labels = np.where(r.random(200) < 0.7, rest_pred, others[r.integers(0, 4, size=200)])
    order = r.permutation(pred.size + 200)
    pred, labels = np.concatenate([pred, rest_pred])[order], np.concatenate([labels, rest_labels])[order]
    fp32 = np.eye(c)[pred] * 5.0 + r.normal(0, 0.1, size=(pred.size, c))
    quant = fp32.copy()
    quant[:, [a, b]] = fp32[:, [b, a]]  # the planted quantizer
    flips = ag.prediction_flips(fp32, quant, labels)
    share = float(np.mean((pred == a) | (pred == b)))
    assert flips["flip_rate"] == pytest.approx(share, abs=1e-15) and share > 0.2
    assert np.mean(fp32.argmax(1) == labels) == np.mean(quant.argmax(1) == labels)
    assert flips["flip_right_to_wrong"] == pytest.approx(flips["flip_wrong_to_right"], abs=1e-15)
    # the distributions moved, the embeddings of the images did not (only the classifier's columns swapped)
    assert ag.mean_kl_divergence(fp32, quant) > 1.0


def test_edge_cases():
    x = np.array([[1.0, 1.0], [0.0, 0.0]])
    assert ag.prediction_flips(x, x[:, ::-1], np.array([0, 1]))["flip_rate"] == 0.0  # ties: first maximum both
    assert ag.mean_kl_divergence(x, x) == 0.0
    assert ag.mean_cosine_similarity(np.zeros((2, 3)), np.ones((2, 3))) == 0.0
    big = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    assert ag.mean_kl_divergence(big, big[:, ::-1]) == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="non-empty"):
        ag.mean_kl_divergence(np.zeros((0, 3)), np.zeros((0, 3)))
    assert math.isnan(ag.mean_kl_divergence(np.zeros((0, 3)), np.zeros((0, 3)), validate_args=False))


@pytest.mark.parametrize("call, match", [
    (lambda: ag.prediction_flips(np.zeros((2, 3)), np.zeros((2, 4)), [0, 1]), "same shape"),
    (lambda: ag.prediction_flips(np.zeros((2, 3)), np.zeros((2, 3)), [0, 3]), "Expected `labels` to lie"),
    (lambda: ag.mean_kl_divergence(np.zeros((2, 3)), np.zeros((3, 3))), "same shape"),
    (lambda: ag.mean_cosine_similarity(np.zeros(3), np.zeros(3)), "Expected `ref_emb`"),
])
def test_validation_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# --- properties --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 80), st.integers(2, 9), st.floats(0.0, 5.0), st.integers(0, 2**16))
@example(71, 2, 2.0, 61)  # found in a fresh clone: the two parts' sum one ulp above the flip rate
def test_property_flip_bounds_and_accuracy_identity(n, c, noise, seed):
    r, q, y = _pair(seed, n=n, c=c, noise=noise)
    f = ag.prediction_flips(r, q, y)
    # (5/71 + 2/71 exceeds 7/71 by one ulp: the sum is compared with a rounding allowance)
    assert 0.0 <= f["flip_right_to_wrong"] + f["flip_wrong_to_right"] <= f["flip_rate"] + 1e-12 and f["flip_rate"] <= 1.0
    acc_r, acc_q = np.mean(r.argmax(1) == y), np.mean(q.argmax(1) == y)
    assert acc_q - acc_r == pytest.approx(f["flip_wrong_to_right"] - f["flip_right_to_wrong"], abs=1e-12)
    # symmetric in which model is called the reference, with the parts swapped
    g = ag.prediction_flips(q, r, y)
    assert g["flip_rate"] == f["flip_rate"] and g["flip_right_to_wrong"] == f["flip_wrong_to_right"]
    # invariant to permuting the samples
    perm = np.random.default_rng(seed).permutation(n)
    assert ag.prediction_flips(r[perm], q[perm], y[perm]) == pytest.approx(f, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.integers(2, 9), st.floats(0.0, 5.0), st.floats(-50, 50), st.integers(0, 2**16))
def test_property_kl_nonnegative_zero_on_equal_and_shift_invariant(n, c, noise, shift, seed):
    r, q, _ = _pair(seed, n=n, c=c, noise=noise)
    kl = ag.mean_kl_divergence(r, q)
    assert kl >= 0.0 and ag.mean_kl_divergence(r, r) == pytest.approx(0.0, abs=1e-12)
    assert ag.mean_kl_divergence(r + shift, q - shift) == pytest.approx(kl, rel=1e-6, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.integers(1, 16), st.floats(0.01, 100.0), st.integers(0, 2**16))
def test_property_cosine_bounds_scale_invariance(n, d, scale, seed):
    r = np.random.default_rng(seed)
    a, b = r.normal(size=(n, d)), r.normal(size=(n, d))
    c = ag.mean_cosine_similarity(a, b)
    assert -1.0 <= c <= 1.0
    assert ag.mean_cosine_similarity(a * scale, b) == pytest.approx(c, abs=1e-12)
    assert ag.mean_cosine_similarity(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ag.mean_cosine_similarity(a, -a) == pytest.approx(-1.0, abs=1e-12)
