"""Tests of qclip.metrics.zeroshot against scikit-learn and naive loops."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qclip.metrics import zeroshot as zs
from tests.metrics._inputs import CLASSIFICATION, MetricTester, make_classification, ties_classification

sklearn_metrics = pytest.importorskip("sklearn.metrics")


# --- references --------------------------------------------------------------------------------


def _reference_topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """scikit-learn's top-k accuracy (ties: higher index first; our inputs have no ties)."""
    with warnings.catch_warnings():  # k >= C is "meaningless" to sklearn, but defined
        warnings.simplefilter("ignore")
        return sklearn_metrics.top_k_accuracy_score(labels, logits, k=k, labels=np.arange(logits.shape[1]))


def _reference_mpcr(logits: np.ndarray, labels: np.ndarray) -> float:
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": those are left out, as ours
        warnings.simplefilter("ignore")
        return sklearn_metrics.balanced_accuracy_score(labels, np.argmax(logits, axis=1))


def _reference_topk_loop(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Naive loop with the documented tie rule: sort by (-score, class index)."""
    hits = 0
    for row, y in zip(logits.tolist(), labels.tolist(), strict=True):
        order = sorted(range(len(row)), key=lambda j, row=row: (-row[j], j))
        hits += y in order[:k]
    return hits / len(labels)


def _reference_classifier(text: np.ndarray, c: int) -> np.ndarray:
    t = text.reshape(c, -1, text.shape[-1])
    out = []
    for cls in t:
        mean = np.mean([v / np.linalg.norm(v) for v in cls], axis=0)
        out.append(mean / np.linalg.norm(mean))
    return np.array(out)


tester = MetricTester()


# --- agreement with the references -------------------------------------------------------------


@pytest.mark.parametrize("inputs", CLASSIFICATION)
@pytest.mark.parametrize("k", [1, 2, 5])
def test_topk_accuracy_matches_sklearn(inputs, k):
    k = min(k, inputs.logits.shape[1])
    tester.run(
        zs.topk_accuracy,
        (inputs.logits, inputs.labels),
        _reference_topk(inputs.logits, inputs.labels, k),
        k=k,
    )


@pytest.mark.parametrize("inputs", CLASSIFICATION)
def test_mean_per_class_recall_matches_sklearn(inputs):
    tester.run(
        zs.mean_per_class_recall,
        (inputs.logits, inputs.labels),
        _reference_mpcr(inputs.logits, inputs.labels),
    )


@pytest.mark.parametrize("inputs", CLASSIFICATION)
def test_zeroshot_metrics_matches_references(inputs):
    lg, lb = inputs
    ref = {
        "top1": _reference_topk(lg, lb, 1),
        "top5": _reference_topk(lg, lb, min(5, lg.shape[1])),
        "mean_per_class_recall": _reference_mpcr(lg, lb),
    }
    out = zs.zeroshot_metrics(lg, lb)
    assert set(out) == set(ref)
    tester.assert_close(out, ref)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_ties_break_by_lower_class_index(seed, k):
    lg, lb = ties_classification(80, 5, seed)
    assert zs.topk_accuracy(lg, lb, k) == pytest.approx(_reference_topk_loop(lg, lb, k), abs=1e-12)


def test_ties_example():
    lg = np.zeros((3, 4))
    # constant logits: class 0 ranks first, class 3 last
    assert zs.topk_hits(lg, np.array([0, 1, 3]), k=1).tolist() == [True, False, False]
    assert zs.topk_hits(lg, np.array([0, 1, 3]), k=2).tolist() == [True, True, False]


@pytest.mark.parametrize("inputs", CLASSIFICATION)
def test_top1_equals_argmax_accuracy(inputs):
    lg, lb = ties_classification(60, 4, 7)
    assert zs.topk_accuracy(lg, lb, 1) == np.mean(zs.predictions(lg) == lb)
    assert zs.topk_accuracy(inputs.logits, inputs.labels, 1) == np.mean(
        np.argmax(inputs.logits, 1) == inputs.labels
    )


@pytest.mark.parametrize("t", [1, 3, 7])
def test_build_classifier_matches_loop(t):
    r = np.random.default_rng(t)
    c, d = 6, 12
    text = r.normal(size=(c * t, d)) * r.uniform(0.5, 3.0, size=(c * t, 1))
    ref = _reference_classifier(text, c)
    w2 = zs.build_classifier(text, c)
    w3 = zs.build_classifier(text.reshape(c, t, d), c)
    assert w2.dtype == np.float32 and w2.shape == (c, d)
    np.testing.assert_allclose(w2, ref, atol=1e-6)
    np.testing.assert_array_equal(w2, w3)
    np.testing.assert_allclose(np.linalg.norm(w2, axis=1), 1.0, atol=1e-6)
    tester.run(zs.build_classifier, (text, c), ref)


def test_zeroshot_logits_matches_naive():
    r = np.random.default_rng(5)
    img, w = r.normal(size=(9, 8)), zs.build_classifier(r.normal(size=(4, 8)), 4)
    ref = np.array([[100.0 * (x / np.linalg.norm(x)) @ row for row in w.astype(float)] for x in img])
    out = zs.zeroshot_logits(img, w)
    assert out.dtype == np.float64  # float64 images
    np.testing.assert_allclose(out, ref, atol=1e-4)
    out32 = zs.zeroshot_logits(img.astype(np.float32), w, logit_scale=50.0)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, ref / 2, atol=1e-3)


def test_per_class_recall_nan_for_absent_classes():
    lg = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    rec = zs.per_class_recall(lg, np.array([0, 0]), n_classes=3)
    assert rec[0] == 0.5 and np.isnan(rec[1]) and np.isnan(rec[2])
    assert zs.mean_per_class_recall(lg, np.array([0, 0])) == 0.5


def test_top5_capped_at_number_of_classes():
    lg, lb = make_classification(50, 3, seed=9)
    assert zs.zeroshot_metrics(lg, lb)["top5"] == 1.0


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: zs.topk_accuracy(np.zeros(3), np.zeros(3, int), 1), "Expected `logits` to be a 2-D array"),
        (
            lambda: zs.topk_accuracy(np.zeros((3, 2)), np.array([0, 1, 2]), 1),
            r"Expected `labels` to lie in \[0, 1\]",
        ),
        (
            lambda: zs.topk_accuracy(np.zeros((3, 2)), np.zeros(2, int), 1),
            "Expected `labels` to have length 3",
        ),
        (lambda: zs.topk_accuracy(np.zeros((3, 2)), np.zeros(3, int), 3), "Expected `k` to be an integer in"),
        (
            lambda: zs.topk_accuracy(np.full((2, 2), np.nan), np.zeros(2, int), 1),
            "Expected `logits` to be finite",
        ),
        (
            lambda: zs.topk_accuracy(np.zeros((2, 2)), np.array([0.5, 1.0]), 1),
            "Expected `labels` to hold integer",
        ),
        (lambda: zs.build_classifier(np.zeros((5, 4)), 2), "multiple of n_classes=2"),
        (lambda: zs.build_classifier(np.zeros((3, 2, 4)), 2), "Expected `text_emb` of shape"),
        (lambda: zs.zeroshot_logits(np.zeros((2, 3)), np.zeros((4, 5))), "share the embedding dimension"),
        (
            lambda: zs.zeroshot_logits(np.zeros((2, 3)), np.zeros((4, 3)), 0.0),
            "Expected `logit_scale` to lie in",
        ),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# --- properties --------------------------------------------------------------------------------

_cls = st.builds(
    make_classification,
    n=st.integers(1, 40),
    c=st.integers(2, 12),
    seed=st.integers(0, 2**16),
    signal=st.floats(0.0, 3.0),
)


@settings(max_examples=40, deadline=None)
@given(_cls, st.integers(0, 2**16))
def test_property_bounds_monotone_and_permutation(inputs, seed):
    lg, lb = inputs
    c = lg.shape[1]
    accs = [zs.topk_accuracy(lg, lb, k) for k in range(1, c + 1)]
    assert all(0.0 <= a <= 1.0 for a in accs)
    assert all(a <= b for a, b in zip(accs, accs[1:], strict=False))  # monotone in k
    assert accs[-1] == 1.0
    perm = np.random.default_rng(seed).permutation(lg.shape[0])
    m, mp = zs.zeroshot_metrics(lg, lb), zs.zeroshot_metrics(lg[perm], lb[perm])
    assert m == pytest.approx(mp, abs=1e-12)
    assert 0.0 <= m["mean_per_class_recall"] <= 1.0


@settings(max_examples=30, deadline=None)
@given(_cls, st.integers(0, 2**16))
def test_property_class_relabelling_invariance(inputs, seed):
    lg, lb = inputs  # continuous logits: no ties, so the order of the classes does not matter
    perm = np.random.default_rng(seed).permutation(lg.shape[1])
    inv = np.argsort(perm)
    assert zs.zeroshot_metrics(lg[:, perm], inv[lb]) == pytest.approx(zs.zeroshot_metrics(lg, lb), abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 12), st.integers(0, 2**16))
def test_property_perfect_scorer_gives_one(n, c, seed):
    lb = np.random.default_rng(seed).integers(0, c, size=n)
    lg = np.eye(c)[lb] * 10.0
    m = zs.zeroshot_metrics(lg, lb)
    assert m["top1"] == m["top5"] == m["mean_per_class_recall"] == 1.0


def test_cosine_similarity_matches_sklearn():
    pairwise = pytest.importorskip("sklearn.metrics.pairwise")
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(6, 5)), rng.normal(size=(9, 5))
    np.testing.assert_allclose(zs.cosine_similarity(a, b), pairwise.cosine_similarity(a, b), atol=1e-12)


@given(st.integers(1, 8), st.integers(1, 8), st.floats(0.1, 100))
@settings(max_examples=40, deadline=None)
def test_cosine_similarity_bounds_and_scale_invariance(m, n, scale):
    rng = np.random.default_rng(m * 10 + n)
    a, b = rng.normal(size=(m, 4)), rng.normal(size=(n, 4))
    s = zs.cosine_similarity(a, b)
    assert s.shape == (m, n) and np.all(np.abs(s) <= 1 + 1e-12)
    np.testing.assert_allclose(zs.cosine_similarity(a * scale, b), s, atol=1e-12)
    np.testing.assert_allclose(np.diag(zs.cosine_similarity(a, a)), 1.0, atol=1e-12)
    assert (zs.cosine_similarity(np.zeros((1, 4)), b) == 0).all()
